"""A small client of Airflow 3's public REST API (``/api/v2``) for one SimpleAuthManager user."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import httpx

from registry.errors import GovflowError

TERMINAL_RUN_STATES = frozenset({"success", "failed"})


class AirflowError(GovflowError):
    """An Airflow REST call failed; carries the call, the HTTP status and Airflow's answer."""

    def __init__(self, call: str, status: int | None, answer: str) -> None:
        where = f"HTTP {status}" if status is not None else "no answer"
        super().__init__(f"airflow {call}: {where}: {answer}", reason=answer)
        self.call = call
        self.status = status
        self.answer = answer


class AirflowClient:
    """Calls ``/api/v2`` as ``user``, with a bearer token from SimpleAuthManager's ``POST /auth/token``."""

    def __init__(self, base_url: str, user: str, password: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.user = user
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)
        answer = self._send("login", "POST", "/auth/token", json={"username": user, "password": password})
        self._http.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AirflowClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing -------------------------------------------------------------------------

    def _send(self, call: str, method: str, path: str, ok: Iterable[int] = (), **kw: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise AirflowError(call, None, f"{type(exc).__name__}: {exc}") from exc
        if response.is_success or response.status_code in set(ok):
            return response
        raise AirflowError(call, response.status_code, _detail(response))

    def _get(self, call: str, path: str, **params: Any) -> Any:
        return self._send(call, "GET", "/api/v2" + path, params=params or None).json()

    # --- dag runs -------------------------------------------------------------------------

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Start a manual run now; returns its run id."""
        body = {"logical_date": None, "conf": conf or {}}
        answer = self._send(f"trigger {dag_id}", "POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)
        return answer.json()["dag_run_id"]

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self._get(f"run {dag_id}/{run_id}", f"/dags/{dag_id}/dagRuns/{run_id}")

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        """Every run of the DAG, oldest first (asset-triggered ones included)."""
        answer = self._get(f"runs {dag_id}", f"/dags/{dag_id}/dagRuns", order_by="run_after", limit=100)
        return answer["dag_runs"]

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 180) -> str:
        """Poll until the run is success or failed; returns that state."""
        state = _poll(
            lambda: self.run(dag_id, run_id)["state"],
            lambda s: s in TERMINAL_RUN_STATES,
            timeout,
            f"run {dag_id}/{run_id} to finish",
        )
        return state

    # --- task instances -------------------------------------------------------------------

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        answer = self._get(f"task states {dag_id}/{run_id}", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return {ti["task_id"]: ti["state"] for ti in answer["task_instances"]}

    def wait_task(
        self, dag_id: str, run_id: str, task_id: str, states: Iterable[str], timeout: float = 120
    ) -> str:
        """Poll until the task is in one of ``states``; returns the state reached."""
        wanted = set(states)
        return _poll(
            lambda: self.task_states(dag_id, run_id).get(task_id),
            lambda s: s in wanted,
            timeout,
            f"task {dag_id}/{run_id}/{task_id} to reach {sorted(wanted)}",
        )

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """The XCom value, deserialized by the API server."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        return self._get(f"xcom {dag_id}/{run_id}/{task_id}/{key}", path, deserialize="true")["value"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """The task's log as text, one line per event."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        answer = self._send(
            f"log {dag_id}/{run_id}/{task_id}",
            "GET",
            path,
            params={"full_content": "true"},
            headers={"Accept": "application/json"},
        ).json()
        lines = []
        for item in answer.get("content", []):
            if isinstance(item, dict):
                extra = {k: v for k, v in item.items() if k not in ("event", "timestamp", "level", "logger")}
                lines.append(f"{item.get('level', '')} {item.get('event', '')} {extra or ''}".strip())
            else:
                lines.append(str(item))
        return "\n".join(lines)

    # --- human in the loop ----------------------------------------------------------------

    def hitl_details(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The run's HITL requests (options, defaults, chosen_options, responded_by_user, ...)."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/hitlDetails"
        return list(self._get(f"hitl details {dag_id}/{run_id}", path)["hitl_details"])

    def respond(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        chosen_options: list[str],
        params_input: dict[str, Any] | None = None,
        map_index: int = -1,
    ) -> httpx.Response:
        """Answer a HITL request; returns the raw response, so a caller can check a refusal (403, 409)."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/hitlDetails"
        body = {"chosen_options": chosen_options, "params_input": params_input or {}}
        try:
            return self._http.patch(path, json=body)
        except httpx.HTTPError as exc:
            raise AirflowError(f"respond {dag_id}/{run_id}/{task_id}", None, str(exc)) from exc

    def set_task_state(self, dag_id: str, run_id: str, task_id: str, state: str) -> httpx.Response:
        """Mark a task instance success, failed or skipped by hand; the raw response."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        try:
            return self._http.patch(path, json={"new_state": state})
        except httpx.HTTPError as exc:
            raise AirflowError(f"set state {dag_id}/{run_id}/{task_id}", None, str(exc)) from exc

    def add_xcom(self, dag_id: str, run_id: str, task_id: str, key: str, value: Any) -> httpx.Response:
        """Create an XCom entry by hand; the raw response."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries"
        try:
            return self._http.post(path, json={"key": key, "value": value})
        except httpx.HTTPError as exc:
            raise AirflowError(f"add xcom {dag_id}/{run_id}/{task_id}", None, str(exc)) from exc

    # --- assets ---------------------------------------------------------------------------

    def asset_events(self, **filters: Any) -> list[dict[str, Any]]:
        """Asset events, newest last; filters as the API takes them (source_dag_id, asset_id, ...)."""
        answer = self._get("asset events", "/assets/events", order_by="timestamp", limit=100, **filters)
        return answer["asset_events"]


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return str(body)[:500]


def _poll(read, done, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = read()
        if done(value):
            return value
        time.sleep(0.5)
    raise AirflowError(f"wait for {what}", None, f"timed out after {timeout:g}s; last seen: {value}")
