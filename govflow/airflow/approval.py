"""The approval step: Airflow's ``ApprovalOperator`` showing the Prefect form's description."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator
from airflow.sdk.exceptions import AirflowSkipException
from airflow.sdk.execution_time.hitl import get_hitl_detail_content_detail

from govflow.airflow import decision
from govflow.airflow.stages import RunInfo
from registry.errors import InvalidInput


class GovflowApproval(ApprovalOperator):
    """Ask a person to approve the staged version; ``Reject`` is the default and the timeout answer.

    Nothing is asked when the gates failed (the task is skipped). The body (gates, comparison
    with production, lineage) and ``response_timeout`` are read from the registry when the task
    runs: the timeout is the config's ``approval_timeout``, else the policy's. Every answer,
    Reject and timeout included, is recorded in the registry by this task; the promote task
    then acts on what the registry holds, so unlike a plain ``ApprovalOperator`` a Reject does
    not skip it (it finds the rejection and promotes nothing).
    """

    def __init__(
        self,
        *,
        config_path: str,
        register_task: str = "register",
        gates_task: str = "gates",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("subject", "Approve the staged version for production?")
        super().__init__(defaults=[decision.REJECT], **kwargs)
        self.config_path = config_path
        self.register_task = register_task
        self.gates_task = gates_task

    def execute(self, context: Any) -> Any:
        ti = context["ti"]
        gates = ti.xcom_pull(task_ids=self.gates_task)
        if not gates or not gates.get("passed"):
            raise AirflowSkipException(f"no approval asked: {(gates or {}).get('reason', 'gates did not run')}")
        registered = ti.xcom_pull(task_ids=self.register_task)
        asked = decision.request(self.config_path, RunInfo.from_context(context), registered)
        self.subject = asked["subject"]
        self.body = asked["body"]
        self.response_timeout = timedelta(seconds=asked["timeout"])
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        """Record the answer in the registry, as Airflow stored it for this request.

        The responder is read back from Airflow's own record of the request (the HITL detail,
        written by the API with the authenticated user), not from anything a task handed on.
        """
        HITLOperator.execute_complete(self, context, event)  # Airflow's checks of the answer
        ti = context["ti"]
        stored = get_hitl_detail_content_detail(ti.id)
        if not stored.response_received:
            raise InvalidInput("approval: Airflow holds no answer for this request", field="approval")
        user = stored.responded_by_user.model_dump() if stored.responded_by_user is not None else None
        answer = {
            "chosen_options": list(stored.chosen_options or []),
            "responded_by_user": user,
            "timedout": bool(event.get("timedout")) and user is None,
        }
        registered = ti.xcom_pull(task_ids=self.register_task)
        return decision.record(self.config_path, RunInfo.from_context(context), registered, answer)
