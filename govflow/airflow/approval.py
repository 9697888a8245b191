"""The approval step: Airflow's ``ApprovalOperator`` showing the Prefect form's description."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator
from airflow.sdk.exceptions import AirflowSkipException

from govflow.airflow import decision
from govflow.airflow.stages import RunInfo


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
        """Record the answer in the registry, as Airflow resumed this task with it.

        The event is built by Airflow from its stored request (the HITL detail, written by the
        API with the authenticated user, or by the scheduler's timeout sweep); nothing a task or
        a user handed on through XCom is read.
        """
        answer = HITLOperator.execute_complete(self, context, event)  # Airflow's checks of the answer
        user = answer.get("responded_by_user")
        decided = {
            "chosen_options": list(answer.get("chosen_options") or []),
            "responded_by_user": dict(user) if user else None,
            "timedout": bool(event.get("timedout")) and not user,
        }
        registered = context["ti"].xcom_pull(task_ids=self.register_task)
        return decision.record(self.config_path, RunInfo.from_context(context), registered, decided)
