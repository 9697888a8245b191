"""Registry benchmark: govflow against MLflow's model registry, same run, same SQLite backend.

Operations: register a version, resolve ``@production``, promote (govflow: approved staging ->
production with archive, alias move and audit event; MLflow: set the ``production`` alias), and
list a model's versions. Resolve is reported twice: our cheap ``resolve`` (name@alias -> version
and digest), and like for like, our full version fetch ``Registry.get`` against MLflow's
``get_model_version_by_alias``, which both return the whole version. Both SQLite databases run
in WAL. Each operation is timed the same number of times on both sides; figures are p50 with
garbage collection off.
"""

from __future__ import annotations

import gc
import logging
import os
import sqlite3
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from registry import Policy, Registry
from registry.db.tables import models as models_table
from registry.db.tables import stage_history, versions

MODEL = "bench"


def p50_ms(fn: Callable[[], object], n: int) -> float:
    """Median wall time of ``fn`` in milliseconds over ``n`` calls, GC off."""
    times = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(n):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    finally:
        gc.enable()
    return statistics.median(times) * 1000


class Govflow:
    """The govflow side."""

    def __init__(self, root: Path) -> None:
        self.reg = Registry(url=f"sqlite:///{root / 'gf.db'}", artifact_root=str(root / "art"), policy=Policy())
        self.artifact = root / "model.bin"
        self.artifact.write_bytes(b"same small model")

    def register(self) -> int:
        return self.reg.register(MODEL, self.artifact, actor="trainer", metrics={"auc": 0.9}).version

    def bulk_fill(self, n: int) -> None:
        """Insert ``n`` versions directly (for the 100k size, where the API would take minutes)."""
        now = self.reg.register(MODEL, self.artifact, actor="trainer").registered_at
        with self.reg.db.engine.begin() as conn:
            model_id = conn.execute(sa.select(models_table.c.id).where(models_table.c.name == MODEL)).scalar_one()
            start = conn.execute(sa.select(models_table.c.last_version)).scalar_one() + 1
            rows = [
                dict(model_id=model_id, version=v, stage="development", review_round=0, artifact_uri="file:///x",
                     artifact_sha256="0" * 64, artifact_size=1, artifact_format="file", params={}, metrics={},
                     tags={}, input_schema=[], registered_by="trainer", registered_at=now, stage_changed_at=now)
                for v in range(start, start + n)
            ]
            for i in range(0, n, 5000):
                conn.execute(versions.insert(), rows[i : i + 5000])
            conn.execute(models_table.update().values(last_version=start + n - 1))
            hist = conn.execute(sa.select(versions.c.id, versions.c.version).where(versions.c.version >= start))
            conn.execute(stage_history.insert(), [
                dict(model_id=model_id, version_id=vid, version=v, to_stage="development", kind="register",
                     actor="trainer", at=now) for vid, v in hist
            ])

    def stage_approved(self) -> int:
        v = self.register()
        self.reg.transition(MODEL, v, "staging", actor="trainer")
        self.reg.approve(MODEL, v, actor="reviewer")
        return v

    def promote(self, v: int) -> None:
        self.reg.transition(MODEL, v, "production", actor="ops")

    def resolve(self) -> None:
        self.reg.resolve(f"{MODEL}@production")

    def get(self) -> None:
        self.reg.get(f"{MODEL}@production")

    def list_versions(self) -> None:
        self.reg.versions(MODEL)

    def journal_mode(self) -> str:
        with self.reg.db.engine.connect() as conn:
            return str(conn.exec_driver_sql("PRAGMA journal_mode").scalar())


class Mlflow:
    """The MLflow side (its own SQLite file, same disk)."""

    def __init__(self, root: Path) -> None:
        self.path = root / "mlflow.db"
        # WAL is stored in the database file, so set it before MLflow creates its schema.
        with sqlite3.connect(self.path) as con:
            assert con.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
        con.close()
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{self.path}")
        from mlflow.tracking import MlflowClient

        uri = f"sqlite:///{self.path}"
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        self.client.create_registered_model(MODEL)
        self.source = str(root / "model.bin")

    def register(self) -> int:
        return int(self.client.create_model_version(MODEL, source=self.source).version)

    def promote(self, v: int) -> None:
        self.client.set_registered_model_alias(MODEL, "production", str(v))

    def resolve(self) -> None:
        self.client.get_model_version_by_alias(MODEL, "production")

    get = resolve  # MLflow has one call for both: it returns the whole version

    def journal_mode(self) -> str:
        con = sqlite3.connect(self.path)
        try:
            return str(con.execute("PRAGMA journal_mode").fetchone()[0])
        finally:
            con.close()

    def list_versions(self) -> None:
        self.client.search_model_versions(f"name='{MODEL}'", max_results=200_000)


def measure(size: int, with_mlflow: bool, reps: int) -> dict[str, dict[str, float]]:
    """Fill to ``size`` versions and time the four operations on each side."""
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sides: dict[str, Govflow | Mlflow] = {"govflow": Govflow(root)}
        if with_mlflow:
            sides["mlflow"] = Mlflow(root)
        for name, side in sides.items():
            res: dict[str, float] = {}
            if name == "govflow" and size > 20_000:
                side.bulk_fill(size - reps)  # type: ignore[union-attr]
                res["register"] = p50_ms(side.register, reps)
            else:
                res["register"] = p50_ms(side.register, size)
            if isinstance(side, Govflow):
                staged = [side.stage_approved() for _ in range(reps + 1)]
                side.promote(staged.pop())
                res["promote"] = p50_ms(lambda s=side, q=staged: s.promote(q.pop()), reps)
            else:
                side.promote(1)
                counter = iter(range(2, size))
                res["promote"] = p50_ms(lambda s=side, c=counter: s.promote(next(c)), reps)
            res["resolve @production"] = p50_ms(side.resolve, reps * 5)
            res["get @production (full version)"] = p50_ms(side.get, reps * 5)
            res["list versions"] = p50_ms(side.list_versions, 5)
            journal = side.journal_mode()
            if journal != "wal":
                raise RuntimeError(f"{name}: SQLite journal_mode is {journal}, not wal")
            out[name] = res
        if isinstance(sides["govflow"], Govflow):
            sides["govflow"].reg.close()
    return out


def run(quick: bool = False) -> str:
    """Run the comparison; return the markdown section."""
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    try:
        import mlflow  # noqa: F401

        have_mlflow = True
    except ImportError:
        have_mlflow = False
    sizes = [200, 1000] if quick else [1_000, 10_000, 100_000]
    reps = 50 if quick else 200
    results = {n: measure(n, have_mlflow and n <= 10_000, reps) for n in sizes}
    ops = ["register", "resolve @production", "get @production (full version)", "promote", "list versions"]
    lines = [
        "## Registry: govflow vs MLflow " + (_mlflow_version() if have_mlflow else "(MLflow not installed)"),
        "",
        f"Command: `make bench` (`python -m bench.registry`). Machine: {os.cpu_count()} cores. SQLite file "
        "backend on the same disk for both, both in WAL (set on MLflow's file before it creates its schema, "
        "checked after timing); govflow commits with synchronous=FULL. p50 in ms, GC off while timing; "
        "each operation runs the same number of times on both sides (register: once per version up to "
        f"10,000, then {reps} on a bulk-filled database; promote {reps}; resolve and get {reps * 5}; "
        "list 5). govflow's promote includes the policy checks, archiving the previous production "
        "version, the alias move and the audit event; MLflow's is `set_registered_model_alias`. govflow's "
        "register includes the artifact hash/dedup, lineage rows and the audit event. "
        "`resolve @production` is govflow's cheap resolve (version number and digest) against MLflow's "
        "`get_model_version_by_alias`; `get @production (full version)` is the like-for-like row: "
        "`Registry.get` returns the whole version (artifact, metrics, lineage, aliases), as MLflow's "
        "call does.",
        "",
        "| versions | operation | govflow ms | MLflow ms | MLflow / govflow |",
        "|---:|---|---:|---:|---:|",
    ]
    for n, res in results.items():
        for op in ops:
            g = res["govflow"][op]
            m = res.get("mlflow", {}).get(op)
            ratio = f"{m / g:.1f}x" if m else "-"
            lines.append(f"| {n:,} | {op} | {g:.3f} | {f'{m:.3f}' if m else '-'} | {ratio} |")
    base, top = sizes[-2] if quick else 1_000, sizes[-1]
    lines += ["", f"Flatness, govflow at {top:,} vs {base:,} versions (target <= 1.5x):", ""]
    for op in ("resolve @production", "get @production (full version)", "promote"):
        ratio = results[top]["govflow"][op] / results[base]["govflow"][op]
        lines.append(f"- {op}: {ratio:.2f}x")
    if not quick:
        lines.append("")
        lines.append("The 100,000-version database is filled by bulk insert; the timed operations go through the API.")
    return "\n".join(lines) + "\n"


def _mlflow_version() -> str:
    import mlflow

    return mlflow.__version__


if __name__ == "__main__":
    import sys

    print(run(quick="--quick" in sys.argv))
