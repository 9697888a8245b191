"""Benchmark ``govflow serve`` against ``mlflow models serve`` on the same sklearn pipeline.

Both servers run as subprocesses on loopback with one process each (MLflow's default of one
uvicorn worker), serving the very same fitted pipeline: ours from the registry (skops, digest
verified, schema-validated), MLflow's from ``mlflow.sklearn.save_model`` with a signature, so
both validate their input. One load client (``http.client`` keep-alive connections in threads,
GC off while measuring) drives both, single-row and 100-row batches, in two request shapes:
row objects (ours ``records``, MLflow's ``dataframe_records``) and MLflow's ``dataframe_split``,
which both servers take:

- latency: one connection, requests back to back (p50/p99);
- throughput: four connections (requests/s, rows/s, p99 under load).

Before measuring, govflow's answers in every request shape it takes (records, a bare array,
dataframe_records, dataframe_split, instances, inputs as rows and as columns) are checked equal
to each other and to MLflow's, and its ``/predict_proba`` rows are checked to sum to one.

``python -m bench.serving`` prints a Markdown section; ``run(quick=True)`` is a short smoke run.
"""

from __future__ import annotations

import contextlib
import gc
import http.client
import itertools
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MODEL = "bench-churn"
CONCURRENCY = 4
# Measured shapes: label -> (govflow's body key, MLflow's body key).
SHAPES = {
    "records": ("records", "dataframe_records"),
    "dataframe_split": ("dataframe_split", "dataframe_split"),
}


@dataclass(frozen=True)
class Stats:
    """Measured requests of one server in one phase, possibly merged over rounds."""

    latencies_ms: np.ndarray
    errors: int
    seconds: float

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def p50_ms(self) -> float:
        return float(np.percentile(self.latencies_ms, 50)) if self.requests else float("nan")

    @property
    def p99_ms(self) -> float:
        return float(np.percentile(self.latencies_ms, 99)) if self.requests else float("nan")

    def __add__(self, other: Stats) -> Stats:
        return Stats(
            np.concatenate([self.latencies_ms, other.latencies_ms]),
            self.errors + other.errors,
            self.seconds + other.seconds,
        )


@dataclass(frozen=True)
class _Side:
    name: str
    port: int
    path: str

    def body(self, records: list[dict[str, Any]], shape: str = "records") -> bytes:
        key = SHAPES[shape][0 if self.name == "govflow" else 1]
        return json.dumps(shaped(key, records)).encode()


def shaped(key: str, records: list[dict[str, Any]]) -> Any:
    """``records`` as a request body of shape ``key`` (``columns`` is inputs as column arrays)."""
    columns = list(records[0])
    if key == "bare":
        return records
    if key == "dataframe_split":
        return {"dataframe_split": {"columns": columns, "data": [[r[c] for c in columns] for r in records]}}
    if key == "columns":
        return {"inputs": {c: [r[c] for r in records] for c in columns}}
    return {key: records}


def run(quick: bool = False) -> str:
    """Run both servers, measure, and return a Markdown section with the table.

    Both servers run at once and the phases alternate between them (A/B, then B/A), so a
    background load on the machine lands on both sides alike.
    """
    plan = _Plan(rounds=1, latency=100, load=200, max_seconds=5.0, warmup=100) if quick else _Plan()
    notes: list[str] = []
    mlflow_problem: str | None = None
    results: dict[tuple[str, str, int, str], Stats] = {}
    with tempfile.TemporaryDirectory(prefix="govflow-bench-serving-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        pipe, frame = _pipeline()
        batches = {1: _records(frame, 1), 100: _records(frame, 100)}
        ours_cmd, ours_env = _govflow_side(work, pipe, frame)
        port = stack.enter_context(_server(ours_cmd, ours_env, work / "govflow.log", "/health"))
        sides = [_Side("govflow", port, "/predict")]
        notes.append(_check_shapes(port, batches[100]))
        mlflow_cmd, mlflow_env, mlflow_problem = _mlflow_side(work, pipe, frame)
        if mlflow_cmd is not None:
            try:
                port = stack.enter_context(_server(mlflow_cmd, mlflow_env, work / "mlflow.log", "/ping"))
                sides.append(_Side("mlflow", port, "/invocations"))
            except RuntimeError as exc:
                mlflow_problem = str(exc)
        answers = {s.name: _post(s.port, s.path, s.body(batches[100]))["predictions"] for s in sides}
        if len(answers) == 2:
            same = answers["govflow"] == answers["mlflow"]
            notes.append(
                "- both servers returned identical predictions for a 100-row probe"
                if same
                else "- **warning: the two servers returned different predictions for the same rows**"
            )
        for side in sides:
            for records in batches.values():
                _measure(side.port, side.path, side.body(records), plan.warmup, 2, 30)
        for r in range(plan.rounds):
            order = sides if r % 2 == 0 else sides[::-1]
            for shape in SHAPES:
                for rows, records in batches.items():
                    for phase, n, conns in (("latency", plan.latency, 1), ("load", plan.load, CONCURRENCY)):
                        for side in order:
                            body = side.body(records, shape)
                            stats = _measure(side.port, side.path, body, n, conns, plan.max_seconds)
                            key = (side.name, shape, rows, phase)
                            results[key] = results[key] + stats if key in results else stats
    return _report(results, quick, plan, mlflow_problem, notes)


@dataclass(frozen=True)
class _Plan:
    """Request counts per phase and round; each phase also stops at ``max_seconds``."""

    rounds: int = 4
    latency: int = 400
    load: int = 1000
    max_seconds: float = 15.0
    warmup: int = 300


# --- the model and its two deployments ------------------------------------------------------


def _pipeline() -> tuple[Any, pd.DataFrame]:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    n = 5000
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 90, n),
            "tenure_months": rng.integers(0, 120, n),
            "income": rng.normal(50_000, 15_000, n),
            "balance": rng.gamma(2.0, 800.0, n),
            "plan": rng.choice(["basic", "plus", "pro", "team"], n),
            "region": rng.choice(["north", "south", "east", "west", "central"], n),
            "active": rng.random(n) > 0.3,
        }
    )
    score = (frame["income"] - 50_000) / 15_000 - frame["tenure_months"] / 60 + (frame["plan"] == "pro") * 0.7
    y = (score + rng.normal(0, 0.5, n) > 0).astype(int)
    numeric = ["age", "tenure_months", "income", "balance"]
    pre = ColumnTransformer(
        [
            ("num", Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]), numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["plan", "region"]),
            ("flag", "passthrough", ["active"]),
        ]
    )
    pipe = Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=1000))]).fit(frame, y)
    return pipe, frame


def _check_shapes(port: int, records: list[dict[str, Any]]) -> str:
    """One note: govflow answers alike in every request shape, and its probabilities sum to one."""
    keys = ["records", "bare", "dataframe_records", "dataframe_split", "instances", "inputs", "columns"]
    answers = {
        k: _post(port, "/predict", json.dumps(shaped(k, records)).encode())["predictions"] for k in keys
    }
    proba = _post(port, "/predict_proba", json.dumps(shaped("dataframe_split", records)).encode())
    sums_to_one = bool(np.allclose(np.sum(proba["predictions"], axis=1), 1.0))
    if len({json.dumps(a) for a in answers.values()}) == 1 and sums_to_one:
        return (
            f"- govflow answered the 100-row probe identically in its {len(keys)} request shapes "
            f"({', '.join(keys)}); /predict_proba rows sum to 1 over classes {proba['classes']}"
        )
    return (
        "- **warning: govflow's answers differ between request shapes, or its probabilities do not sum to 1**"
    )


def _records(frame: pd.DataFrame, n: int) -> list[dict[str, Any]]:
    return json.loads(frame.head(n).to_json(orient="records"))


def _govflow_side(work: Path, pipe: Any, frame: pd.DataFrame) -> tuple[list[str], dict[str, str]]:
    from registry import Policy, Registry

    url, root = f"sqlite:///{work / 'registry.db'}", str(work / "artifacts")
    reg = Registry(url=url, artifact_root=root, policy=Policy())
    mv = reg.register_model(
        MODEL,
        pipe,
        actor="bench",
        input_schema=[{"name": c, "dtype": str(t)} for c, t in frame.dtypes.items()],
    )
    reg.transition(MODEL, mv.version, "staging", actor="bench")
    reg.approve(MODEL, mv.version, actor="bench-approver")
    reg.transition(MODEL, mv.version, "production", actor="bench")
    reg.close()
    env = {**os.environ, "GOVFLOW_REGISTRY_URL": url, "GOVFLOW_ARTIFACT_ROOT": root, "GOVFLOW_ACTOR": "bench"}
    # `govflow serve`, importing the command module itself so it works whether or not the CLI lists it.
    cmd = [sys.executable, "-c", "import govflow.cli.serve; from govflow.cli import main; main()"]
    return [*cmd, "serve", MODEL, "--port", "{port}", "--log-level", "warning"], env


def _mlflow_side(
    work: Path, pipe: Any, frame: pd.DataFrame
) -> tuple[list[str] | None, dict[str, str], str | None]:
    try:
        import mlflow
        import mlflow.sklearn
        from mlflow.models import infer_signature
    except ImportError as exc:
        return None, {}, f"mlflow does not import here ({exc}); install the bench extra"
    path = work / "mlflow-model"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the integer-columns hint; our rows never carry nulls
        signature = infer_signature(frame.head(100), pipe.predict(frame.head(100)))
    try:
        # The same extra type our allowlist trusts for SimpleImputer; MLflow also saves with skops.
        mlflow.sklearn.save_model(pipe, str(path), signature=signature, skops_trusted_types=["numpy.dtype"])
    except mlflow.exceptions.MlflowException as exc:
        return None, {}, f"mlflow.sklearn.save_model failed: {str(exc).splitlines()[0]}"

    bindir = str(Path(sys.executable).parent)
    # MLflow execs `uvicorn` from PATH; point it at this interpreter's environment.
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    env.setdefault("MLFLOW_TRACKING_URI", (work / "mlruns").as_uri())
    if shutil.which("uvicorn", path=env["PATH"]) is None:
        return None, env, "uvicorn is not on PATH; mlflow models serve needs it"
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", str(path), "--env-manager", "local"]
    return [*cmd, "-h", "127.0.0.1", "-p", "{port}"], env, None


# --- processes and the load client ------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _server(cmd: list[str], env: dict[str, str], log: Path, ready: str) -> Iterator[int]:
    """Start ``cmd`` on a free port, wait (bounded) for ``ready`` to answer 200, stop it after."""
    port = _free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [part.replace("{port}", str(port)) for part in cmd],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                tail = log.read_text()[-600:].strip()
                raise RuntimeError(f"`{' '.join(cmd[:6])} …` exited with {proc.returncode}: {tail}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", ready)
                if conn.getresponse().status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not answer {ready} within 120 s")
            time.sleep(0.1)  # waiting for a subprocess to boot; bounded by the deadline above
        yield port
    finally:
        # The whole session: `mlflow models serve` runs uvicorn as a child process.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


_HEADERS = {"Content-Type": "application/json"}


def _post(port: int, path: str, body: bytes) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", path, body, _HEADERS)
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"{path}: HTTP {resp.status}: {data[:300]!r}")
    return json.loads(data)


def _measure(port: int, path: str, body: bytes, requests: int, concurrency: int, max_seconds: float) -> Stats:
    """``requests`` POSTs over ``concurrency`` keep-alive connections, stopping at ``max_seconds``."""
    ticket = itertools.count()
    latencies: list[list[int]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    start_gate = threading.Barrier(concurrency + 1)
    deadline = [0.0]

    def worker(slot: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = latencies[slot]
        start_gate.wait()
        while next(ticket) < requests and time.perf_counter() < deadline[0]:
            t0 = time.perf_counter_ns()
            conn.request("POST", path, body, _HEADERS)
            resp = conn.getresponse()
            resp.read()
            mine.append(time.perf_counter_ns() - t0)
            if resp.status != 200:
                errors[slot] += 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    gc.collect()
    gc.disable()  # client-side GC pauses would land in the tail of whichever server is measured
    try:
        t0 = time.perf_counter()
        deadline[0] = t0 + max_seconds
        start_gate.wait()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - t0
    finally:
        gc.enable()
    flat = np.array([x for per in latencies for x in per], dtype=np.float64) / 1e6
    return Stats(latencies_ms=flat, errors=sum(errors), seconds=seconds)


# --- report ------------------------------------------------------------------------------------


def _report(
    results: dict[tuple[str, str, int, str], Stats],
    quick: bool,
    plan: _Plan,
    mlflow_problem: str | None,
    notes: list[str],
) -> str:
    from importlib.metadata import PackageNotFoundError, version

    def ver(pkg: str) -> str:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return "absent"

    lines = [
        "## Serving (`bench/serving.py`)",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; machine: {os.cpu_count()} cores, "
        f"{platform.machine()}, Python {platform.python_version()}; servers and client share the cores",
        f"- servers: `govflow serve` vs `mlflow models serve --env-manager local` (mlflow {ver('mlflow')}), "
        f"one process each, uvicorn {ver('uvicorn')}, fastapi {ver('fastapi')}, same fitted pipeline "
        "(imputer + scaler + one-hot + logistic regression, 7 columns), input validated by both, "
        "one log line per request on both",
        f"- client: http.client keep-alive, GC off while measuring; {plan.rounds} round(s) alternating "
        f"which server goes first; per round and server: latency = 1 connection × {plan.latency} "
        f"requests, load = {CONCURRENCY} connections × {plan.load} requests in total, each phase capped "
        f"at {plan.max_seconds:.0f} s; {plan.warmup} warm-up requests per batch size; shapes: row "
        "objects (ours `records`, MLflow's `dataframe_records`) and `dataframe_split` (both)"
        f"{' (quick smoke run)' if quick else ''}",
        "- ratio = govflow ÷ MLflow: below 1 is better for latency, above 1 is better for throughput",
        "- command: `python -m bench.serving`",
        *notes,
        "",
    ]
    if mlflow_problem:
        lines += [f"- **MLflow could not run: {mlflow_problem}**", ""]
    lines += ["| shape | batch | metric | govflow | MLflow | ratio |", "|---|---|---|---|---|---|"]
    verdicts: list[str] = []
    for shape, rows in itertools.product(SHAPES, (1, 100)):
        ours = (
            results.get(("govflow", shape, rows, "latency")),
            results.get(("govflow", shape, rows, "load")),
        )
        theirs = (
            results.get(("mlflow", shape, rows, "latency")),
            results.get(("mlflow", shape, rows, "load")),
        )
        if ours[0] is None or ours[1] is None:
            continue
        metrics: list[tuple[str, int, Any, str]] = [
            ("p50 latency, 1 conn (ms)", 0, lambda s: s.p50_ms, "{:.2f}"),
            ("p99 latency, 1 conn (ms)", 0, lambda s: s.p99_ms, "{:.2f}"),
            (f"throughput, {CONCURRENCY} conns (req/s)", 1, lambda s: s.rps, "{:.0f}"),
            (f"rows/s, {CONCURRENCY} conns", 1, lambda s, n=rows: s.rps * n, "{:.0f}"),
            (f"p50 latency, {CONCURRENCY} conns (ms)", 1, lambda s: s.p50_ms, "{:.2f}"),
            (f"p99 latency, {CONCURRENCY} conns (ms)", 1, lambda s: s.p99_ms, "{:.2f}"),
        ]
        for label, phase, get, fmt in metrics:
            a = get(ours[phase])
            other = theirs[phase]
            b = get(other) if other is not None else None
            ratio = f"{a / b:.2f}" if b else "-"
            shown = fmt.format(b) if b is not None else "n/a"
            lines.append(
                f"| {shape} | {rows} row{'s' if rows > 1 else ''} | {label} | {fmt.format(a)} | {shown} | {ratio} |"
            )
        errs = sum(s.errors for s in (*ours, *theirs) if s is not None)
        if errs:
            verdicts.append(f"- {shape}, {rows}-row batches: **{errs} non-200 answers**")
        if theirs[0] is not None and theirs[1] is not None:
            met = ours[1].rps >= theirs[1].rps and ours[1].p99_ms <= theirs[1].p99_ms
            seq = ours[0].p99_ms <= theirs[0].p99_ms
            verdicts.append(
                f"- {shape}, {rows}-row batches: target (throughput ≥ MLflow's and p99 ≤ MLflow's, under load) "
                f"{'met' if met else '**not met**'}; p99 on 1 connection {'≤' if seq else '>'} MLflow's"
            )
    return "\n".join([*lines, "", *verdicts])


if __name__ == "__main__":
    print(run())
