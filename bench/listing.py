"""Listing benchmark: pages of versions, filters and the full listing, govflow against MLflow.

Run alone with ``python -m bench.registry --listing``; ``make bench`` runs it inside the registry
suite, whose section it is.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.harness import p50_ms
from registry import Policy, Registry
from registry.db.tables import models as models_table
from registry.db.tables import versions

MODEL = "bench"

PAGE = 100
LISTING_OPS = [
    "page of 100, newest first",
    "next page (token)",
    "page of 100, tag filter",
    "page of 100, stage + metric filter",
    "full listing",
]


def _listing_rows(model_id: int, start: int, n: int, at: Any) -> list[dict[str, Any]]:
    """Versions as the API stores them: one in five staging, a metric and two tags each."""
    return [
        dict(
            model_id=model_id,
            version=v,
            stage="staging" if v % 5 == 0 else "archived",
            review_round=1,
            artifact_uri=f"file:///art/{v:064x}",
            artifact_sha256=f"{v:064x}",
            artifact_size=1,
            artifact_format="skops",
            params={"depth": v % 7},
            metrics={"auc": (v % 100) / 100},
            tags={"team": "a" if v % 2 else "b", "tier": str(v % 3)},
            input_schema=[{"name": "age", "dtype": "int64"}],
            registered_by="trainer",
            registered_at=at,
            stage_changed_at=at,
        )
        for v in range(start, start + n)
    ]


class ListingGovflow:
    """govflow's side of the listing comparison, filled by bulk insert (the reads go through the API)."""

    def __init__(self, root: Path) -> None:
        self.reg = Registry(
            url=f"sqlite:///{root / 'gf-list.db'}", artifact_root=str(root / "art"), policy=Policy()
        )
        blob = root / "model.bin"
        blob.write_bytes(b"same small model")
        self.at = self.reg.register(MODEL, blob, actor="trainer").registered_at
        self.size = 1

    def grow(self, size: int) -> None:
        with self.reg.db.engine.begin() as conn:
            model_id = conn.execute(
                sa.select(models_table.c.id).where(models_table.c.name == MODEL)
            ).scalar_one()
            rows = _listing_rows(model_id, self.size + 1, size - self.size, self.at)
            for i in range(0, len(rows), 5000):
                conn.execute(versions.insert(), rows[i : i + 5000])
            conn.execute(models_table.update().values(last_version=size))
        self.size = size

    def ops(self) -> dict[str, Any]:
        reg = self.reg
        token = reg.versions(MODEL, limit=PAGE).next_page_token
        return {
            "page of 100, newest first": lambda: reg.versions(MODEL, limit=PAGE),
            "next page (token)": lambda: reg.versions(MODEL, limit=PAGE, page_token=token),
            "page of 100, tag filter": lambda: reg.versions(MODEL, limit=PAGE, tags={"team": "a"}),
            "page of 100, stage + metric filter": lambda: reg.versions(
                MODEL, limit=PAGE, stage="staging", metrics="auc>=0.5"
            ),
            "full listing": lambda: reg.versions(MODEL),
        }


class ListingMlflow:
    """MLflow's side: ``search_model_versions``, filled through its API with the same tags."""

    def __init__(self, root: Path) -> None:
        path = root / "mlflow-list.db"
        with sqlite3.connect(path) as con:
            assert con.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
        con.close()
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=f"sqlite:///{path}", registry_uri=f"sqlite:///{path}")
        self.client.create_registered_model(MODEL)
        self.source = str(root / "model.bin")
        self.size = 0

    def grow(self, size: int) -> None:
        for v in range(self.size + 1, size + 1):
            tags = {"team": "a" if v % 2 else "b", "tier": str(v % 3)}
            self.client.create_model_version(MODEL, source=self.source, tags=tags)
        self.size = size

    def ops(self) -> dict[str, Any]:
        search = self.client.search_model_versions
        name = f"name='{MODEL}'"
        token = search(name, max_results=PAGE).token
        return {
            "page of 100, newest first": lambda: search(name, max_results=PAGE),
            "next page (token)": lambda: search(name, max_results=PAGE, page_token=token),
            "page of 100, tag filter": lambda: search(f"{name} and tags.team = 'a'", max_results=PAGE),
            "full listing": lambda: search(name, max_results=200_000),
        }


def measure_listing(sizes: list[int], with_mlflow: bool, reps: int) -> dict[int, dict[str, dict[str, float]]]:
    """Grow one database per side through ``sizes`` and time every listing operation at each."""
    out: dict[int, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ours = ListingGovflow(root)
        theirs = ListingMlflow(root) if with_mlflow else None
        try:
            for size in sizes:
                out[size] = {}
                for label, side in (("govflow", ours), ("mlflow", theirs)):
                    if side is None or (label == "mlflow" and size > 10_000):
                        continue
                    side.grow(size)
                    out[size][label] = {
                        op: p50_ms(fn, 5 if op == "full listing" else reps) for op, fn in side.ops().items()
                    }
        finally:
            ours.reg.close()
    return out


def listing_section(quick: bool = False) -> str:
    """The listing comparison as a markdown section (``python -m bench.registry --listing``)."""
    try:
        import mlflow  # noqa: F401

        have_mlflow = True
    except ImportError:
        have_mlflow = False
    sizes = [200, 1_000] if quick else [1_000, 10_000, 100_000]
    reps = 20 if quick else 50
    results = measure_listing(sizes, have_mlflow, reps)
    lines = [
        "### Listing: pages, filters, the full listing",
        "",
        f"Command: `python -m bench.registry --listing` (part of `make bench`). Machine: {os.cpu_count()} "
        "cores. SQLite in WAL on both sides, one database per side grown through the sizes. govflow is "
        "filled by bulk insert (one version in five staging, an `auc` metric, `team` and `tier` tags); "
        "MLflow through `create_model_version` with the same tags. Timed through the public APIs: "
        "`Registry.versions(name, limit=100, ...)` against `MlflowClient.search_model_versions(..., "
        "max_results=100)`; the next page uses each side's page token (ours a keyset, MLflow's an "
        f"offset); the tag filter is `tags.team = 'a'` on both. p50 in ms over {reps} calls (5 for the "
        "full listing), GC off. MLflow has no stage or metric on a version: that row is ours alone. "
        "Listing rows leave approvals and evidence out (`with_decisions=True` reads them).",
        "",
        "| versions | operation | govflow ms | MLflow ms | MLflow / govflow |",
        "|---:|---|---:|---:|---:|",
    ]
    for n, res in results.items():
        for op in LISTING_OPS:
            g = res["govflow"][op]
            m = res.get("mlflow", {}).get(op)
            ratio = f"{m / g:.1f}x" if m else "-"
            lines.append(f"| {n:,} | {op} | {g:.3f} | {f'{m:.3f}' if m else '-'} | {ratio} |")
    lines += ["", "Targets:", ""]
    for op, label, target in (
        ("page of 100, newest first", "page of 100", 2),
        ("full listing", "full listing", 1),
    ):
        for n in sizes[:2]:
            m = results[n].get("mlflow", {}).get(op)
            if m is not None:
                r = m / results[n]["govflow"][op]
                lines.append(
                    f"- {label} at {n:,}: {r:.1f}x MLflow (target >= {target}x): "
                    f"{'met' if r >= target else '**not met**'}"
                )
    base, top = sizes[0], sizes[-1]
    for op in LISTING_OPS[:-1]:
        r = results[top]["govflow"][op] / results[base]["govflow"][op]
        lines.append(
            f"- {op}, flat with size: {r:.2f}x at {top:,} vs {base:,} (target <= 1.5x): "
            + ("met" if r <= 1.5 else "**not met**")
        )
    return "\n".join(lines) + "\n"
