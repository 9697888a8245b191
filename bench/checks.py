"""Benchmark the quality gates against their anchors, in one run on one machine.

- drift: ``drift_gate`` (PSI/JS on stored bins) vs scipy ``ks_2samp`` on the same numeric columns,
  and Evidently's DataDriftPreset when it imports;
- fairness: ``fairness_gate`` (vectorized path) vs fairlearn ``MetricFrame``, values compared;
- data validation: ``checks.data.validate`` vs raw GX with the same expectations.

``python -m bench.checks`` prints a Markdown section; ``run(quick=True)`` is a small smoke run.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

N_NUMERIC, CATEGORIES = 10, {"c0": ["a", "b", "c", "d"], "c1": list("pqrstuvw")}


def run(quick: bool = False) -> str:
    """Run all three benchmarks and return a Markdown section with their tables."""
    n = 20_000 if quick else 1_000_000
    repeats = 3
    head = [
        "## Quality gates (`bench/checks.py`)",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; machine: {os.cpu_count()} cores, "
        f"{platform.machine()}, Python {platform.python_version()}",
        f"- rows: {n:,}{' (quick smoke run)' if quick else ''}; every time, ours and the anchors', is "
        f"the median of {repeats} runs",
        "- command: `python -m bench.checks`",
        "",
    ]
    sections = [_drift(n, repeats), _fairness(n, repeats), _data(n, repeats)]
    return "\n".join(head + [s for sec in sections for s in (sec, "")])


# --- helpers ------------------------------------------------------------------------------


def _time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _frame(n: int, seed: int, shift: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {f"x{i}": rng.normal(size=n) for i in range(N_NUMERIC)}
    if shift:
        cols["x0"] = cols["x0"] + 0.5  # mean +0.5σ
        cols["x1"] = cols["x1"] * 1.5  # scale ×1.5
    cols["c0"] = rng.choice(CATEGORIES["c0"], n, p=[0.4, 0.3, 0.2, 0.1])
    probs = np.full(8, 1 / 8) if not shift else np.array([0.3] + [0.1] * 7)
    cols["c1"] = rng.choice(CATEGORIES["c1"], n, p=probs)
    return pd.DataFrame(cols)


# --- drift --------------------------------------------------------------------------------


def _drift(n: int, repeats: int) -> str:
    from scipy.stats import ks_2samp

    from checks.drift import DriftReference, drift_gate

    ref_df, cur_df = _frame(n, 1, shift=False), _frame(n, 2, shift=True)
    numeric = [f"x{i}" for i in range(N_NUMERIC)]
    t_fit, ref = _time(lambda: DriftReference.fit(ref_df), repeats)
    t_gate, gate = _time(lambda: drift_gate(ref, cur_df), repeats)
    ref_num = DriftReference.fit(ref_df, numeric)
    t_gate_num, _ = _time(lambda: drift_gate(ref_num, cur_df[numeric]), repeats)
    t_ks, ks = _time(lambda: {c: ks_2samp(ref_df[c], cur_df[c]) for c in numeric}, repeats)
    evidently = _evidently(ref_df, cur_df, repeats)

    feats = gate.details["features"]
    rows = [
        [
            "drift_gate, 10 numeric (bins stored)",
            f"{t_gate_num:.3f}",
            f"{t_ks:.3f}",
            f"{t_ks / t_gate_num:.1f}×",
        ],
        [
            "drift_gate, 10 numeric + 2 categorical",
            f"{t_gate:.3f}",
            f"{t_ks:.3f} (numeric only)",
            f"{t_ks / t_gate:.1f}×",
        ],
        [
            "fit reference + drift_gate, 12 columns",
            f"{t_fit + t_gate:.3f}",
            f"{t_ks:.3f}",
            f"{t_ks / (t_fit + t_gate):.1f}×",
        ],
        ["Evidently DataDriftPreset", "—", evidently, "—"],
    ]
    verdict_rows = []
    for c in numeric + list(CATEGORIES):
        d = feats[c]
        k = ks.get(c)
        ks_cell = f"D={k.statistic:.4f}, p={k.pvalue:.2g}" if k is not None else "n/a (categorical)"
        ks_flag = ("drift" if k.pvalue < 0.05 else "no drift") if k is not None else "—"
        ours = "drift" if d["status"] != "ok" else "no drift"
        verdict_rows.append(
            [
                c,
                d["method"],
                f"{d['value']:.4f}",
                d["status"],
                ks_cell,
                ks_flag,
                "—" if k is None else "yes" if ks_flag == ours else "**no**",
            ]
        )
    return "\n".join(
        [
            f"### Drift: {n:,} reference vs {n:,} current rows × (10 numeric + 2 categorical)",
            "",
            "Targets: ≥ 5× scipy, ≥ 50× Evidently. Current data: x0 mean +0.5σ, x1 scale ×1.5, "
            "c1 one category 12.5% → 30%; the rest resampled from the same distribution.",
            "",
            _table(["case", "ours (s)", "scipy ks_2samp (s)", "ratio"], rows),
            "",
            f"Dataset verdict (ours): **{gate.details['verdict']}**, drifted/warned features "
            f"{gate.details['drifted'] + gate.details['warned']}, max PSI "
            f"{gate.details['max_psi']:.4f}. Fit alone: {t_fit:.3f} s (done once, at registration).",
            "",
            _table(["feature", "method", "value", "our status", "KS", "KS p<0.05", "agree"], verdict_rows),
            "",
            "KS at this size calls noise significant by chance (p < 0.05 for ~5% of unchanged "
            "columns) and tiny shifts significant by size; it is not used as a gate above "
            "`ks_max_n`.",
        ]
    )


def _evidently(ref_df: pd.DataFrame, cur_df: pd.DataFrame, repeats: int) -> str:
    try:
        from evidently import Report  # type: ignore[import-not-found]
        from evidently.presets import DataDriftPreset  # type: ignore[import-not-found]
    except Exception as exc:  # noqa: BLE001 - any import failure means "not measurable here"
        # Not installed on purpose: Evidently 0.7.23 does not import with pandas >= 3.1 (field notes).
        return (
            f"not measured: does not import here ({type(exc).__name__}: {str(exc)[:50]}); "
            "0.7.23 fails to import with pandas ≥ 3.1"
        )
    t, _ = _time(lambda: Report([DataDriftPreset()]).run(cur_df, ref_df), repeats)
    return f"{t:.3f}"


# --- fairness -----------------------------------------------------------------------------


def _fairness(n: int, repeats: int) -> str:
    import warnings

    from fairlearn.metrics import (
        MetricFrame,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )

    from checks.fairness import fairness_gate

    rng = np.random.default_rng(7)
    group = pd.Series(rng.choice(["a", "b", "c", "d", "e"], n), name="group")
    y_true = rng.integers(0, 2, n)
    y_pred = (rng.random(n) < 0.3 + 0.05 * (group == "b").to_numpy()).astype(int)
    t_ours, gate = _time(
        lambda: fairness_gate(y_true, y_pred, group, method="fast", min_group_size=1), repeats
    )

    def anchor() -> tuple[pd.DataFrame, pd.Series, pd.Series]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mf = MetricFrame(
                metrics={
                    "selection_rate": selection_rate,
                    "tpr": true_positive_rate,
                    "fpr": false_positive_rate,
                },
                y_true=y_true,
                y_pred=y_pred,
                sensitive_features=group,
            )
            return mf.by_group, mf.difference(), mf.ratio()

    t_fl, (by, diff, ratio) = _time(anchor, repeats)
    fs = gate.details["feature_sets"]["group"]
    pairs = [
        ("demographic_parity_difference", fs["demographic_parity_difference"], diff["selection_rate"]),
        ("demographic_parity_ratio", fs["demographic_parity_ratio"], ratio["selection_rate"]),
        ("equalized_odds_difference", fs["equalized_odds_difference"], max(diff["tpr"], diff["fpr"])),
        ("equal_opportunity_difference", fs["equal_opportunity_difference"], diff["tpr"]),
    ]
    worst_group = max(
        abs(g[m] - by.loc[g["group"]["group"], m])
        for g in fs["groups"]
        for m in ("selection_rate", "tpr", "fpr")
    )
    value_rows = [[m, f"{a:.15f}", f"{b:.15f}", f"{abs(a - b):.1e}"] for m, a, b in pairs]
    value_rows.append(
        ["per-group selection rate / TPR / FPR (max |Δ|, 15 values)", "", "", f"{worst_group:.1e}"]
    )
    return "\n".join(
        [
            f"### Fairness: {n:,} rows, one sensitive feature with 5 groups",
            "",
            "Target: ≥ 20× fairlearn with identical values. Ours is the full `fairness_gate` "
            "(input checks, vectorized counts, verdict); the anchor is `MetricFrame` with "
            "selection rate, TPR and FPR plus `difference()` and `ratio()`.",
            "",
            _table(
                ["case", "ours (s)", "fairlearn MetricFrame (s)", "ratio"],
                [["fairness_gate(method='fast')", f"{t_ours:.3f}", f"{t_fl:.3f}", f"{t_fl / t_ours:.1f}×"]],
            ),
            "",
            _table(["value", "ours", "fairlearn", "|Δ|"], value_rows),
            "",
            f"Gate verdict: passed={gate.passed} ({gate.message}).",
        ]
    )


# --- data validation ----------------------------------------------------------------------


def _data(n: int, repeats: int) -> str:
    from checks.data import DataContract, validate

    rng = np.random.default_rng(3)
    df = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(8)})
    df["id"] = np.arange(n)
    df["cat"] = rng.choice(["a", "b", "c"], n)
    df.loc[df.index[:25], "x0"] = 99.0  # out of range: both sides must fail this one
    df.loc[df.index[5:10], "x1"] = np.nan  # nulls in a non-nullable column
    contract = DataContract.model_validate(
        {
            "name": "bench",
            "columns": {
                **{f"x{i}": {"dtype": "float", "nullable": i >= 4, "min": -10, "max": 10} for i in range(4)},
                **{f"x{i}": {"dtype": "float", "nullable": False} for i in range(4, 8)},
                "id": {"dtype": "int", "unique": True},
                "cat": {"dtype": "string", "allowed": ["a", "b", "c"]},
            },
            "min_rows": 1,
        }
    )
    validate(df.head(10), contract)  # warm the one-per-process GX context for ours
    raw_run = _raw_gx(contract)
    raw_run(df.head(10))

    t_ours, t_raw, ours, raw = [], [], None, None
    for _ in range(repeats):  # interleaved, so both see the same machine state
        t0 = time.perf_counter()
        ours = validate(df, contract)
        t_ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        raw = raw_run(df)
        t_raw.append(time.perf_counter() - t0)
    to, tr = statistics.median(t_ours), statistics.median(t_raw)
    assert ours is not None and raw is not None
    ours_failed = {
        (f["column"], f["expectation"]): f.get("unexpected_count") for f in ours.details["failures"]
    }
    verdict_rows = []
    for r in raw.results:
        cfg = r.expectation_config
        key = (cfg.kwargs.get("column"), cfg.type.removeprefix("expect_"))
        ours_ok = key not in ours_failed
        verdict_rows.append(
            [
                key[0] or "<table>",
                key[1],
                "pass" if ours_ok else "fail",
                "pass" if r.success else "fail",
                ours_failed.get(key, 0),
                r.result.get("unexpected_count", "—"),
                "yes" if ours_ok == r.success else "**no**",
            ]
        )
    return "\n".join(
        [
            f"### Data validation: {n:,} rows × 10 columns, "
            f"{len(raw.results)} GX expectations (+ 10 pandas dtype checks on our side)",
            "",
            "Target: at most 1.2× raw GX. Raw GX = its own ephemeral context, the same suite, "
            "`ValidationDefinition.run` with SUMMARY results; both warmed once, medians of "
            f"{repeats} interleaved runs.",
            "",
            _table(
                ["case", "ours (s)", "raw GX (s)", "ours / raw"],
                [["validate(df, contract)", f"{to:.3f}", f"{tr:.3f}", f"{to / tr:.2f}×"]],
            ),
            "",
            _table(
                ["column", "expectation", "ours", "raw GX", "ours unexpected", "raw unexpected", "agree"],
                verdict_rows,
            ),
        ]
    )


def _raw_gx(contract: Any) -> Callable[[pd.DataFrame], Any]:
    """A plain GX 1.x pipeline (field notes' minimal path) for the contract's expectations."""
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_def = (
        ctx.data_sources.add_pandas("raw")
        .add_dataframe_asset("raw")
        .add_batch_definition_whole_dataframe("raw")
    )
    suite = ctx.suites.add(gx.ExpectationSuite(name="raw"))
    for c in contract.columns:
        if not c.nullable:
            suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=c.name))
        if c.min is not None or c.max is not None:
            suite.add_expectation(
                gxe.ExpectColumnValuesToBeBetween(column=c.name, min_value=c.min, max_value=c.max)
            )
        if c.allowed is not None:
            suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column=c.name, value_set=c.allowed))
        if c.unique:
            suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column=c.name))
    suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(min_value=contract.min_rows))
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name="raw", data=batch_def, suite=suite))
    return lambda df: vd.run(batch_parameters={"dataframe": df})


if __name__ == "__main__":
    print(run())
