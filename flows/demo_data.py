"""Deterministic credit-risk-like demo data: a base period, a later period and a drifted period.

Generated locally from a seed; nothing is downloaded. ``sex`` is the sensitive attribute (kept
out of the features, used by the fairness gate); ``default`` is the binary target.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

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


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".govflow/demo/data")
    for name, path in write_demo_data(out).items():
        print(f"{name}: {path}")
