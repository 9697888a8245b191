"""Deterministic credit-risk-like demo data: a base period, a later period and a drifted period.

Generated locally from a seed; nothing is downloaded. ``sex`` is the sensitive attribute (kept
out of the features, used by the fairness gate); ``default`` is the binary target.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from flows.config import PipelineConfig

REGIONS = ["north", "south", "east", "west"]


def make_period(n: int, seed: int, *, shift: float = 0.0, drift: bool = False) -> pd.DataFrame:
    """One period of applicants. ``shift`` nudges incomes (a later period); ``drift`` moves most
    features far from the training distribution (a changed population)."""
    rng = np.random.default_rng(seed)
    age = rng.normal(42 - (12 if drift else 0), 11, n).clip(18, 85).round()
    income = rng.lognormal(10.6 + shift + (0.6 if drift else 0.0), 0.45, n).round(-2)
    debt_ratio = rng.beta(2 + (4 if drift else 0), 5, n).round(3)
    credit_lines = rng.poisson(4 + (5 if drift else 0), n)
    late_payments = rng.poisson(0.6 + (2.5 if drift else 0.0), n)
    loan_amount = (income * rng.uniform(0.1, 0.6 + (1.2 if drift else 0.0), n)).round(-2)
    employment_years = rng.gamma(2.0, 3.0 + (-2.0 if drift else 0.0), n).round(1)
    region_p = [0.1, 0.1, 0.2, 0.6] if drift else [0.3, 0.3, 0.2, 0.2]
    region = rng.choice(REGIONS, n, p=region_p)
    sex = rng.choice(["female", "male"], n)
    logit = (
        -1.2
        + 3.2 * (debt_ratio - 0.3)
        + 0.55 * late_payments
        - 0.9 * (np.log(income) - 10.6)
        + 0.8 * (loan_amount / income - 0.35)
        - 0.02 * (age - 42)
        - 0.05 * employment_years
        + np.where(region == "south", 0.3, 0.0)
    )
    default = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame(
        {
            "age": age.astype(int),
            "income": income,
            "debt_ratio": debt_ratio,
            "credit_lines": credit_lines,
            "late_payments": late_payments,
            "loan_amount": loan_amount,
            "employment_years": employment_years,
            "region": region,
            "sex": sex,
            "default": default,
        }
    )


def write_demo_data(folder: Path, rows: int = 4000) -> dict[str, Path]:
    """Write train/eval files for two periods plus a drifted period; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = {
        "base_train": make_period(rows, 1),
        "base_eval": make_period(rows // 4, 2),
        "later_train": make_period(rows, 3, shift=0.08),
        "later_eval": make_period(rows // 4, 4, shift=0.08),
        "drifted": make_period(rows // 2, 5, shift=0.08, drift=True),
        "stable": make_period(rows // 2, 6, shift=0.08),
    }
    paths = {}
    for name, frame in frames.items():
        paths[name] = folder / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    return paths


# --- `data.example: credit-risk`: the same periods, written where a config expects them ----------

RECENT_DAYS = 3


def _write(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    # Written aside then renamed, so an interrupted first run never leaves a half file that counts as present.
    if path.suffix.lower() in (".parquet", ".pq"):
        frame.to_parquet(tmp, index=False)
    else:
        frame.to_csv(tmp, index=False)
    tmp.replace(path)
    return path


def recent_day(day: date, seed: int, rows: int = 1000) -> pd.DataFrame:
    """One day of the later (stable) period, with an ``applied_at`` timestamp for time windows."""
    frame = make_period(rows, seed, shift=0.08)
    seconds = np.sort(np.random.default_rng(seed).uniform(0, 86_400, rows))
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    frame["applied_at"] = [(start + timedelta(seconds=float(s))).isoformat() for s in seconds]
    return frame


def _recent_targets(config: PipelineConfig, today: date) -> list[tuple[Path, Callable[[], pd.DataFrame]]]:
    """Files for ``monitor.source`` when it names a local file, folder or glob that matches nothing."""
    source = config.monitor.source
    if source is None or source.path.startswith("s3://"):
        return []
    location = config.resolve_uri(source.path)
    days = [today - timedelta(days=n) for n in range(RECENT_DAYS - 1, -1, -1)]
    if not source.is_glob and not location.endswith("/") and Path(location).suffix:
        target = Path(location)
        return [] if target.exists() else [(target, lambda: recent_day(today, 20))]
    first = min((location.index(c) for c in "*?[" if c in location), default=len(location))
    folder = Path(location[: location.rfind("/", 0, first) + 1] if source.is_glob else location)
    pattern = location[len(str(folder)) + 1 :] if source.is_glob else "*"
    suffix = ".parquet" if source.format == "parquet" or pattern.endswith((".parquet", ".pq")) else ".csv"
    names = [f"{day.isoformat()}{suffix}" for day in days]
    if folder.is_dir() and any(p.is_file() for p in folder.rglob("*")):
        return []
    if not all(fnmatchcase(n, pattern) for n in names):
        return []  # a pattern our day files would not match: nothing sensible to write
    return [
        (folder / name, lambda day=day, i=i: recent_day(day, 20 + i))
        for i, (day, name) in enumerate(zip(days, names, strict=True))
    ]


def write_example(config: PipelineConfig, today: date | None = None) -> list[Path]:
    """For ``data.example: credit-risk``, write the synthetic data to each configured local file
    that is missing (train: base period, eval, reference, a single ``path``; ``monitor.source``:
    recent days of the later period), plus ``drifted.csv`` beside the training data on first
    use. Present files are left alone; s3:// locations are never written. Returns what was written.
    """
    spec = config.data
    if spec.example != "credit-risk":
        return []
    roles: dict[str, Callable[[], pd.DataFrame]] = {
        "train": lambda: make_period(4000, 1),
        "eval": lambda: make_period(1000, 2),
        "reference": lambda: make_period(4000, 1),
        "path": lambda: make_period(5000, 1),
    }
    targets = []
    for role, build in roles.items():
        location = getattr(spec, role)
        if location is not None and not location.startswith("s3://"):
            path = config.resolve(location)
            assert path is not None
            if not path.exists():
                targets.append((path, build))
    if targets:
        drifted = targets[0][0].parent / "drifted.csv"
        if not drifted.exists():
            targets.append((drifted, lambda: make_period(2000, 5, shift=0.08, drift=True)))
    targets += _recent_targets(config, today or datetime.now(UTC).date())
    return [_write(build(), path) for path, build in targets]


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".govflow/demo/data")
    for name, path in write_demo_data(out).items():
        print(f"{name}: {path}")
