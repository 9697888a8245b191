"""The approval step: Airflow's ``ApprovalOperator`` showing the Prefect form's description."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator
from airflow.sdk.exceptions import AirflowSkipException

from govflow.airflow import decision


class GovflowApproval(ApprovalOperator):
    """Ask a person to approve the staged version; ``Reject`` is the default and the timeout answer.

    Nothing is asked when the gates failed (the task is skipped). The body (gates, comparison
    with production, lineage) and ``response_timeout`` are read from the registry when the task
    runs: the timeout is the config's ``approval_timeout``, else the policy's. Every answer,
    Reject and timeout included, is handed to the promote task, which records it in the
    registry; so unlike a plain ``ApprovalOperator`` a Reject does not skip it.
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
        asked = decision.request(self.config_path, context["dag_run"].run_id, registered)
        self.subject = asked["subject"]
        self.body = asked["body"]
        self.response_timeout = timedelta(seconds=asked["timeout"])
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        # HITLOperator's checks of the answer, without ApprovalOperator's skip on Reject.
        answer = dict(HITLOperator.execute_complete(self, context, event))
        responded_at = answer.get("responded_at")
        answer["responded_at"] = responded_at.isoformat() if hasattr(responded_at, "isoformat") else responded_at
        answer["timedout"] = bool(event.get("timedout"))
        return answer
