"""Registry benchmark: govflow against MLflow's model registry, embedded, same run, same backend.

SQLite at 1,000, 10,000 and 100,000 versions; PostgreSQL at 1,000 (a fresh database per side,
dropped after). Operations: register a version with a fresh 1 MiB artifact (new random bytes each
time, so no side takes a de-duplication shortcut), resolve ``@production``, promote (govflow: approved staging ->
production with archive, alias move and audit event; MLflow: set the ``production`` alias), and
list a model's versions. Resolve is reported twice: our cheap ``resolve`` (name@alias -> version
and digest), and like for like, our full version fetch ``Registry.get`` against MLflow's
``get_model_version_by_alias``, which both return the whole version. Both SQLite databases run
in WAL. Each operation is timed the same number of times on both sides; figures are p50 with
garbage collection off.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
import warnings
from contextlib import ExitStack
from pathlib import Path

import sqlalchemy as sa

from bench.harness import fresh_file, p50_ms, pg_database, pg_reachable
from bench.listing import listing_section
from registry import Policy, Registry
from registry.db.tables import models as models_table
from registry.db.tables import stage_history, versions

MODEL = "bench"
MIB = 1 << 20


class Govflow:
    """The govflow side."""

    def __init__(self, root: Path, url: str | None = None) -> None:
        url = url or f"sqlite:///{root / 'gf.db'}"
        self.reg = Registry(url=url, artifact_root=str(root / "art"), policy=Policy())
        self.artifact = root / "model.bin"
        self.artifact.write_bytes(b"same small model")

    def register(self, path: Path | None = None) -> int:
        """Register ``path`` (a fresh file when timed), else the one small file (fill only)."""
        return self.reg.register(MODEL, path or self.artifact, actor="trainer", metrics={"auc": 0.9}).version

    def bulk_fill(self, n: int) -> None:
        """Insert ``n`` versions directly (for the 100k size, where the API would take minutes)."""
        now = self.reg.register(MODEL, self.artifact, actor="trainer").registered_at
        with self.reg.db.engine.begin() as conn:
            model_id = conn.execute(
                sa.select(models_table.c.id).where(models_table.c.name == MODEL)
            ).scalar_one()
            start = conn.execute(sa.select(models_table.c.last_version)).scalar_one() + 1
            rows = [
                dict(
                    model_id=model_id,
                    version=v,
                    stage="development",
                    review_round=0,
                    artifact_uri="file:///x",
                    artifact_sha256="0" * 64,
                    artifact_size=1,
                    artifact_format="file",
                    params={},
                    metrics={},
                    tags={},
                    input_schema=[],
                    registered_by="trainer",
                    registered_at=now,
                    stage_changed_at=now,
                )
                for v in range(start, start + n)
            ]
            for i in range(0, n, 5000):
                conn.execute(versions.insert(), rows[i : i + 5000])
            conn.execute(models_table.update().values(last_version=start + n - 1))
            hist = conn.execute(
                sa.select(versions.c.id, versions.c.version).where(versions.c.version >= start)
            )
            conn.execute(
                stage_history.insert(),
                [
                    dict(
                        model_id=model_id,
                        version_id=vid,
                        version=v,
                        to_stage="development",
                        kind="register",
                        actor="trainer",
                        at=now,
                    )
                    for vid, v in hist
                ],
            )

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
        if self.reg.db.dialect != "sqlite":
            return "wal"
        with self.reg.db.engine.connect() as conn:
            return str(conn.exec_driver_sql("PRAGMA journal_mode").scalar())


class Mlflow:
    """The MLflow side (its own SQLite file, same disk)."""

    def __init__(self, root: Path, url: str | None = None) -> None:
        self.path = root / "mlflow.db"
        if url is None:
            # WAL is stored in the database file, so set it before MLflow creates its schema.
            with sqlite3.connect(self.path) as con:
                assert con.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
            con.close()
        uri = url or f"sqlite:///{self.path}"
        self.sqlite = url is None
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        self.client.create_registered_model(MODEL)
        art = root / "ml-art"
        experiment = self.client.create_experiment("bench", artifact_location=art.as_uri())
        self.run = self.client.create_run(experiment)
        self.source = str(root / "model.bin")
        self.count = 0

    def register(self, path: Path | None = None) -> int:
        """With ``path``: store the artifact with the run, then register it (what a user does)."""
        if path is None:
            return int(self.client.create_model_version(MODEL, source=self.source).version)
        self.count += 1
        folder = f"m{self.count}"
        self.client.log_artifact(self.run.info.run_id, str(path), artifact_path=folder)
        source = f"{self.run.info.artifact_uri}/{folder}/{path.name}"
        return int(
            self.client.create_model_version(MODEL, source=source, run_id=self.run.info.run_id).version
        )

    def promote(self, v: int) -> None:
        self.client.set_registered_model_alias(MODEL, "production", str(v))

    def resolve(self) -> None:
        self.client.get_model_version_by_alias(MODEL, "production")

    get = resolve  # MLflow has one call for both: it returns the whole version

    def journal_mode(self) -> str:
        if not self.sqlite:
            return "wal"
        con = sqlite3.connect(self.path)
        try:
            return str(con.execute("PRAGMA journal_mode").fetchone()[0])
        finally:
            con.close()

    def list_versions(self) -> None:
        self.client.search_model_versions(f"name='{MODEL}'", max_results=200_000)


def measure(size: int, with_mlflow: bool, reps: int, backend: str = "sqlite") -> dict[str, dict[str, float]]:
    """Fill to ``size`` versions and time the operations on each side."""
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        root = Path(tmp)
        urls: dict[str, str | None] = {"govflow": None, "mlflow": None}
        if backend == "postgres":
            urls["govflow"] = f"postgresql+psycopg://{stack.enter_context(pg_database('gf'))}"
            urls["mlflow"] = f"postgresql+psycopg2://{stack.enter_context(pg_database('ml'))}"
        sides: dict[str, Govflow | Mlflow] = {"govflow": Govflow(root, urls["govflow"])}
        stack.callback(sides["govflow"].reg.close)  # type: ignore[union-attr]
        if with_mlflow:
            sides["mlflow"] = Mlflow(root, urls["mlflow"])
        fresh = min(reps, 100)
        for name, side in sides.items():
            res: dict[str, float] = {}
            if name == "govflow" and size > 20_000:
                side.bulk_fill(size - fresh)  # type: ignore[union-attr]
            else:
                for _ in range(size - fresh):
                    side.register()
            files = [fresh_file(root / f"fresh-{i}.bin", MIB) for i in range(fresh)]
            queue = list(reversed(files))
            res["register"] = p50_ms(lambda s=side, q=queue: s.register(q.pop()), fresh)
            for f in files:
                f.unlink()
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
    fresh = min(reps, 100)
    results = {("sqlite", n): measure(n, have_mlflow and n <= 10_000, reps) for n in sizes}
    pg_problem = pg_reachable()
    pg_size = 1_000
    if not pg_problem:
        results[("postgres", pg_size)] = measure(pg_size, have_mlflow, reps, backend="postgres")
    ops = ["register", "resolve @production", "get @production (full version)", "promote", "list versions"]
    lines = [
        "## Registry: govflow vs MLflow " + (_mlflow_version() if have_mlflow else "(MLflow not installed)"),
        "",
        f"Command: `make bench` (`python -m bench.registry`). Machine: {os.cpu_count()} cores. Both embedded "
        "(each library opens the database itself), on the same backend: SQLite files on the same disk, both "
        "in WAL (set on MLflow's file before it creates its schema, checked after timing; govflow commits "
        "with synchronous=FULL), and PostgreSQL 15 on loopback (a fresh database per side). p50 in ms, GC "
        "off while timing; each operation runs the same number of times on both sides. register: the "
        f"database is first filled to the size (through the API with one small file; by bulk insert at "
        f"100,000), then {fresh} registrations each with a fresh 1 MiB artifact of new random bytes are "
        "timed: govflow hashes and stores the bytes and writes the version, lineage and audit rows; MLflow "
        "logs the artifact to its run's local artifact store and creates the version. promote "
        f"{reps}; resolve and get {reps * 5}; list 5. govflow's promote includes the policy checks, "
        "archiving the previous production version, the alias move and the audit event; MLflow's is "
        "`set_registered_model_alias`. `resolve @production` is govflow's cheap resolve (version number "
        "and digest) against MLflow's `get_model_version_by_alias`; `get @production (full version)` is "
        "the like-for-like row: `Registry.get` returns the whole version (artifact, metrics, lineage, "
        "aliases), as MLflow's call does.",
        "",
        "| backend | versions | operation | govflow ms | MLflow ms | MLflow / govflow |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for (kind, n), res in results.items():
        for op in ops:
            g = res["govflow"][op]
            m = res.get("mlflow", {}).get(op)
            ratio = f"{m / g:.1f}x" if m else "-"
            lines.append(f"| {kind} | {n:,} | {op} | {g:.3f} | {f'{m:.3f}' if m else '-'} | {ratio} |")
    base, top = sizes[-2] if quick else 1_000, sizes[-1]
    lines += ["", f"Flatness on SQLite, govflow at {top:,} vs {base:,} versions (target <= 1.5x):", ""]
    for op in ("resolve @production", "get @production (full version)", "promote"):
        ratio = results[("sqlite", top)]["govflow"][op] / results[("sqlite", base)]["govflow"][op]
        lines.append(f"- {op}: {ratio:.2f}x")
    pg = results.get(("postgres", pg_size))
    lines += ["", f"Embedded PostgreSQL targets at {pg_size:,} versions:", ""]
    if pg is None:
        lines.append(f"- not run: PostgreSQL unreachable ({pg_problem})")
    else:
        for op, limit in (("resolve @production", 0.4), ("promote", 3.0)):
            g = pg["govflow"][op]
            m = pg.get("mlflow", {}).get(op)
            ok = g <= limit and (m is None or m / g >= 5)
            vs = f", {m / g:.1f}x MLflow (target >= 5x)" if m else ""
            lines.append(f"- {op}: {g:.3f} ms (target <= {limit} ms){vs}: {'met' if ok else '**not met**'}")
    if not quick:
        lines.append("")
        lines.append(
            "The 100,000-version database is filled by bulk insert; the timed operations go through the API."
        )
    return "\n".join(lines) + "\n\n" + listing_section(quick)


def _mlflow_version() -> str:
    import mlflow

    return mlflow.__version__


if __name__ == "__main__":
    import sys

    quick = "--quick" in sys.argv
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    print(listing_section(quick) if "--listing" in sys.argv else run(quick=quick))
