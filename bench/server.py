"""Server benchmark: ``govflow server`` against ``mlflow server`` over loopback HTTP, same backend.

Each side is a subprocess on a free loopback port with one worker process, reached through its
own client: ``Registry("http://…")`` (RemoteRegistry) and ``MlflowClient``. Both run on SQLite
and on PostgreSQL, each on a fresh database created here and dropped after. Both are filled to
10,000 versions by bulk insert (a copy of one registered version), then the timed calls go
through HTTP:

- resolve ``@production`` (govflow ``resolve``; MLflow ``get_model_version_by_alias``);
- register with a fresh 1 MiB artifact each time (govflow streams it to the server; MLflow
  uploads it to its proxied artifact store, then creates the version pointing at it);
- promote an approved staged version (govflow) against moving the ``production`` alias (MLflow);
- one page of 100 versions from 10,000 (``versions(limit=100)``; ``search_model_versions``).
"""

from __future__ import annotations

import logging
import sqlite3
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import sqlalchemy as sa

from bench.harness import (
    Server,
    clone_rows,
    free_port,
    fresh_file,
    p50_ms,
    pg_database,
    pg_reachable,
    running,
    start_govflow,
)

MODEL = "bench"
MIB = 1 << 20
OPS = ["resolve @production", "register (fresh 1 MiB)", "promote / set alias", "page of 100 from 10,000"]
TARGETS = {OPS[0]: 5.0, OPS[1]: 2.0, OPS[2]: 5.0, OPS[3]: 2.0}


@contextmanager
def backend(kind: str, root: Path) -> Iterator[tuple[str, str]]:
    """(govflow URL, MLflow URL) for two fresh databases of ``kind`` (sqlite or postgres)."""
    if kind == "sqlite":
        mlflow_db = root / "mlflow.db"
        # WAL lives in the file: set it before MLflow creates its schema (govflow sets its own).
        with sqlite3.connect(mlflow_db) as con:
            con.execute("PRAGMA journal_mode=WAL")
        con.close()
        yield f"sqlite:///{root / 'govflow.db'}", f"sqlite:///{mlflow_db}"
        return
    with pg_database("gf") as gf, pg_database("ml") as ml:
        yield f"postgresql+psycopg://{gf}", f"postgresql+psycopg2://{ml}"


class Govflow:
    """``govflow server`` and one RemoteRegistry per role."""

    def __init__(self, db_url: str, root: Path, size: int, stack: ExitStack) -> None:
        self.root = root
        _fill_govflow(db_url, root, size)
        url, tokens = start_govflow(db_url, root / "gf-art", root, stack)
        from registry import Registry

        self.clients = {}
        for role, token in tokens.items():
            self.clients[role] = Registry(url, token=token)
            stack.callback(self.clients[role].close)

    def register(self, path: Path) -> int:
        return int(self.clients["pipeline"].register(MODEL, path, metrics={"auc": 0.9}).version)

    def staged_approved(self, path: Path) -> int:
        v = self.register(path)
        self.clients["pipeline"].transition(MODEL, v, "staging")
        self.clients["approver"].approve(MODEL, v, reason="bench")
        return v

    def promote(self, v: int) -> None:
        self.clients["operator"].transition(MODEL, v, "production")

    def resolve(self) -> None:
        self.clients["reader"].resolve(f"{MODEL}@production")

    def page(self) -> None:
        got = self.clients["reader"].versions(MODEL, limit=100)
        assert len(got) == 100


class Mlflow:
    """``mlflow server`` (proxied artifacts, one worker) and its MlflowClient."""

    def __init__(self, db_url: str, root: Path, size: int, stack: ExitStack) -> None:
        from mlflow.tracking import MlflowClient

        port = free_port()
        cmd = [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            db_url,
            "--serve-artifacts",
            "--artifacts-destination",
            str(root / "ml-art"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ]
        url = f"http://127.0.0.1:{port}"
        stack.enter_context(running(Server("mlflow server", cmd, {}, root / "mlflow.log", url + "/health")))
        self.client = MlflowClient(tracking_uri=url, registry_uri=url)
        self.client.create_registered_model(MODEL)
        self.run = self.client.create_run("0")
        self.count = 0
        self.register(fresh_file(root / "template.bin", MIB))
        _fill_mlflow(db_url, size)

    def register(self, path: Path) -> int:
        self.count += 1
        run_id = self.run.info.run_id
        folder = f"m{self.count}"
        self.client.log_artifact(run_id, str(path), artifact_path=folder)
        source = f"{self.run.info.artifact_uri}/{folder}/{path.name}"
        return int(self.client.create_model_version(MODEL, source=source, run_id=run_id).version)

    def staged_approved(self, path: Path) -> int:
        return self.register(path)

    def promote(self, v: int) -> None:
        self.client.set_registered_model_alias(MODEL, "production", str(v))

    def resolve(self) -> None:
        self.client.get_model_version_by_alias(MODEL, "production")

    def page(self) -> None:
        got = self.client.search_model_versions(f"name='{MODEL}'", max_results=100)
        assert len(got) == 100


def _fill_govflow(db_url: str, root: Path, size: int) -> None:
    """Register one version embedded, then copy it to ``size`` versions by bulk insert."""
    from registry import Policy, Registry
    from registry.db.tables import models, stage_history, versions

    reg = Registry(
        url=db_url, artifact_root=str(root / "gf-art"), default_policy=Policy(authenticated_approvals=True)
    )
    try:
        reg.register(MODEL, fresh_file(root / "template.bin", MIB), actor="bench-pipeline")
        with reg.db.engine.begin() as conn:
            row = dict(conn.execute(sa.select(versions)).mappings().one())
            first = row.pop("id")
            clone_rows(conn, versions, row, [{"version": v} for v in range(2, size + 1)])
            conn.execute(models.update().values(last_version=size))
            hist = dict(
                conn.execute(sa.select(stage_history).where(stage_history.c.version_id == first))
                .mappings()
                .one()
            )
            hist.pop("id")
            made = conn.execute(sa.select(versions.c.id, versions.c.version).where(versions.c.version > 1))
            clone_rows(conn, stage_history, hist, [{"version_id": i, "version": v} for i, v in made])
    finally:
        reg.close()


def _fill_mlflow(db_url: str, size: int) -> None:
    """Copy MLflow's version 1 to ``size`` versions in its own ``model_versions`` table."""
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            table = sa.Table("model_versions", sa.MetaData(), autoload_with=conn)
            row = dict(conn.execute(sa.select(table).where(table.c.version == 1)).mappings().one())
            clone_rows(conn, table, row, [{"version": v} for v in range(2, size + 1)])
    finally:
        engine.dispose()


def measure(side: Govflow | Mlflow, root: Path, reps: int) -> dict[str, float]:
    """Time the four operations on one side (page first, while there are exactly 10,000)."""
    res = {OPS[3]: p50_ms(side.page, max(10, reps // 4))}
    files = [fresh_file(root / f"model-{i}.bin", MIB) for i in range(reps)]
    queue = list(reversed(files))
    res[OPS[1]] = p50_ms(lambda: side.register(queue.pop()), reps)
    for f in files:
        f.unlink()
    small = root / "small.bin"
    staged = [side.staged_approved(fresh_file(small, 64)) for _ in range(reps + 1)]
    side.promote(staged.pop(0))
    res[OPS[2]] = p50_ms(lambda: side.promote(staged.pop(0)), reps)
    res[OPS[0]] = p50_ms(side.resolve, reps * 5)
    return res


def run_backend(kind: str, size: int, reps: int) -> dict[str, dict[str, float]]:
    """Both sides on fresh ``kind`` databases; {side: {operation: p50 ms}}."""
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with backend(kind, root) as (gf_url, ml_url):
            sides: list[tuple[str, Callable[[ExitStack], Govflow | Mlflow], Path]] = [
                ("govflow", lambda st: Govflow(gf_url, root / "gf", size, st), root / "gf"),
                ("mlflow", lambda st: Mlflow(ml_url, root / "ml", size, st), root / "ml"),
            ]
            for name, make, folder in sides:
                folder.mkdir()
                with ExitStack() as stack:
                    out[name] = measure(make(stack), folder, reps)
    return out


def run(quick: bool = False) -> str:
    """Run both backends; return the markdown section."""
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    import mlflow

    size = 2_000 if quick else 10_000
    reps = 20 if quick else 100
    kinds = ["sqlite"] + ([] if pg_reachable() else ["postgres"])
    results = {kind: run_backend(kind, size, reps) for kind in kinds}
    lines = [
        f"## Server: `govflow server` vs `mlflow server` {mlflow.__version__} over HTTP",
        "",
        "Command: `make bench` (`python -m bench.server`). Each server is a subprocess on loopback with one "
        'worker process, reached through its own client (govflow `Registry("http://…")`, MLflow '
        "`MlflowClient`), on a fresh database of the same backend. Both are bulk-filled to "
        f"{size:,} versions; the timed calls go through HTTP. p50 in ms, GC off in the client; "
        f"register and promote {reps} times, resolve {reps * 5}, the page {max(10, reps // 4)}. govflow's "
        "register streams a fresh 1 MiB artifact and registers it (two requests); MLflow's uploads a fresh "
        "1 MiB artifact to its proxied artifact store, then creates the version. govflow's promote runs "
        "the policy checks, archives the previous version, moves the alias and appends the audit event; "
        "MLflow's is `set_registered_model_alias`.",
        "",
        "| backend | operation | govflow ms | MLflow ms | MLflow / govflow | target |",
        "|---|---|---:|---:|---:|---|",
    ]
    for kind, res in results.items():
        for op in OPS:
            g, m = res["govflow"][op], res["mlflow"][op]
            met = "met" if m / g >= TARGETS[op] else "**not met**"
            lines.append(
                f"| {kind} | {op} | {g:.2f} | {m:.2f} | {m / g:.1f}x | >= {TARGETS[op]:.0f}x, {met} |"
            )
    if "postgres" not in results:
        lines += ["", f"PostgreSQL was unreachable ({pg_reachable()}); only SQLite ran."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
