"""Drift reference and drift gate: real shifts found, resampling noise ignored at 1M rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp

from checks.drift import DriftReference, drift_gate, js_distance, psi
from checks.drift_reference import bin_counts
from registry.errors import InvalidInput

BIG = 1_000_000


def _frame(n: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "mean_shift": rng.normal(size=n) + shift,
            "scale_shift": rng.normal(size=n) * scale,
            "stable": rng.normal(10, 3, n),
            "colour": rng.choice(["red", "green", "blue"], n, p=[0.5, 0.3, 0.2]),
        }
    )


@pytest.fixture(scope="module")
def big_reference() -> DriftReference:
    return DriftReference.fit(_frame(BIG, seed=1))


def test_reference_round_trips_through_json(big_reference: DriftReference) -> None:
    text = json.dumps(big_reference.model_dump(mode="json"))
    again = DriftReference.model_validate(json.loads(text))
    assert again == big_reference
    num = again.features["mean_shift"]
    assert num.kind == "numeric" and len(num.edges) == 9 and len(num.frequencies) == 10
    assert np.allclose(num.frequencies, 0.1, atol=1e-6)  # decile bins hold a tenth each
    assert again.features["colour"].kind == "categorical"
    assert again.features["colour"].frequencies["red"] == pytest.approx(0.5, abs=0.002)


def test_resampling_noise_at_1m_rows_is_ok(big_reference: DriftReference) -> None:
    r = drift_gate(big_reference, _frame(BIG, seed=2))
    assert r.passed and r.details["verdict"] == "ok", r.message
    assert r.details["max_psi"] < 0.001
    assert all(d["status"] == "ok" for d in r.details["features"].values())


def test_mean_and_scale_shifts_are_found_at_1m_rows(big_reference: DriftReference) -> None:
    shifted = _frame(BIG, seed=3, shift=0.5, scale=1.5)
    r = drift_gate(big_reference, shifted)
    feats = r.details["features"]
    assert feats["mean_shift"]["value"] > 0.2 and feats["mean_shift"]["status"] != "ok"
    assert feats["scale_shift"]["value"] > 0.15 and feats["scale_shift"]["status"] != "ok"
    assert feats["stable"]["status"] == "ok" and feats["stable"]["value"] < 0.001
    assert set(r.details["drifted"] + r.details["warned"]) == {"mean_shift", "scale_shift"}
    assert r.details["verdict"] == "warn" and r.details["max_psi_feature"] == "mean_shift"
    # With a lower drift share, two of four features drifting is enough to act.
    strict = drift_gate(big_reference, shifted, act=0.15, drift_share=0.5)
    assert not strict.passed and strict.details["verdict"] == "act"


def test_ks_never_gates_at_large_n(big_reference: DriftReference) -> None:
    cur = _frame(BIG, seed=4, shift=0.05)
    ref_raw = _frame(BIG, seed=1)
    # KS calls a 0.05σ shift overwhelmingly significant at this size ...
    assert ks_2samp(ref_raw["mean_shift"], cur["mean_shift"]).pvalue < 1e-50
    # ... yet the gate is not moved by it, even with KS switched on.
    r = drift_gate(big_reference, cur, ks_alpha=0.05)
    feat = r.details["features"]["mean_shift"]
    assert feat["status"] == "ok" and feat["value"] < 0.01
    assert feat["ks"].startswith("skipped")
    assert r.details["verdict"] == "ok"


def test_ks_is_a_secondary_signal_for_small_samples() -> None:
    ref = DriftReference.fit(_frame(20_000, seed=1))
    cur = _frame(400, seed=5, shift=0.25)  # PSI stays under warn; KS sees it at n=400
    off = drift_gate(ref, cur)
    assert "ks_pvalue" not in off.details["features"]["mean_shift"]
    assert off.details["features"]["mean_shift"]["status"] == "ok"
    feat = drift_gate(ref, cur, ks_alpha=0.01).details["features"]["mean_shift"]
    assert feat["value"] < 0.1 and feat["ks_pvalue"] < 0.01
    assert feat["status"] == "warn" and feat["status_reason"].startswith("KS")
    # KS can raise a feature to warn, never to act, and leaves unshifted features alone.
    big = drift_gate(ref, _frame(400, seed=6, shift=2.0), ks_alpha=0.01)
    assert big.details["features"]["mean_shift"]["status"] == "act"  # from PSI, not KS
    same = drift_gate(ref, _frame(400, seed=6), ks_alpha=0.001)
    assert same.details["features"]["stable"]["ks_pvalue"] > 0.001
    assert same.details["features"]["stable"]["status"] == "ok"


def test_unseen_categories_raise_js_distance() -> None:
    ref = DriftReference.fit(_frame(50_000, seed=1))
    cur = _frame(50_000, seed=2)
    rng = np.random.default_rng(0)
    cur["colour"] = np.where(rng.random(len(cur)) < 0.4, "purple", cur["colour"])
    r = drift_gate(ref, cur)
    feat = r.details["features"]["colour"]
    assert feat["method"] == "jensenshannon" and feat["status"] == "act"
    assert feat["unseen_share"] == pytest.approx(0.4, abs=0.01)
    assert feat["unseen_examples"] == ["purple"]
    assert "colour" in r.details["drifted"]


def test_psi_and_js_match_their_definitions() -> None:
    p = np.array([0.1, 0.2, 0.3, 0.4])
    q = np.array([0.25, 0.25, 0.25, 0.25])
    assert psi(p, q) == pytest.approx(float(np.sum((q - p) * np.log(q / p))), rel=1e-12)
    assert js_distance(p, q) == pytest.approx(jensenshannon(p, q), rel=1e-9)
    z = np.array([0.5, 0.5, 0.0])
    assert js_distance(z, np.array([0.0, 0.5, 0.5])) == pytest.approx(
        jensenshannon(z, [0.0, 0.5, 0.5]), rel=1e-9
    )
    assert psi(p, p) == 0.0


@pytest.mark.parametrize("n_edges", [3, 9, 40])
def test_bin_counts_paths_agree_with_searchsorted(n_edges: int) -> None:
    rng = np.random.default_rng(n_edges)
    x = np.round(rng.normal(size=50_000), 1)  # ties land exactly on edges
    x[::97] = np.nan
    x[5], x[6] = np.inf, -np.inf
    edges = np.unique(np.quantile(x[np.isfinite(x)], np.linspace(0, 1, n_edges + 2)[1:-1]))
    counts, present = bin_counts(x, edges)
    ok = x[~np.isnan(x)]
    expected = np.bincount(np.searchsorted(edges, ok, side="left"), minlength=edges.size + 1)
    assert present == ok.size
    assert counts.tolist() == expected.tolist()


def test_missing_rate_change_is_flagged() -> None:
    ref = DriftReference.fit(_frame(20_000, seed=1))
    cur = _frame(20_000, seed=2)
    cur.loc[cur.index[:4_000], "stable"] = np.nan  # 0% → 20% missing, distribution unchanged
    feat = drift_gate(ref, cur).details["features"]["stable"]
    assert feat["status"] == "act" and feat["status_reason"] == "missing-value rate changed"
    assert feat["nan_rate_change"] == pytest.approx(0.2)
    assert feat["value"] < 0.01


def test_current_data_problems_fail_the_gate_not_raise() -> None:
    ref = DriftReference.fit(_frame(5_000, seed=1))
    empty = drift_gate(ref, _frame(5_000, seed=2).iloc[:0])
    assert not empty.passed and empty.details["verdict"] == "act"
    assert {d["method"] for d in empty.details["features"].values()} == {"empty"}
    cur = _frame(5_000, seed=2).drop(columns=["stable"])
    cur["mean_shift"] = cur["mean_shift"].astype(str)
    r = drift_gate(ref, cur, drift_share=0.5)
    feats = r.details["features"]
    assert feats["stable"]["method"] == "missing" and feats["stable"]["status"] == "act"
    assert feats["mean_shift"]["method"] == "dtype" and feats["mean_shift"]["status"] == "act"
    assert not r.passed and sorted(r.details["drifted"]) == ["mean_shift", "stable"]


def test_dict_reference_and_fit_options() -> None:
    df = _frame(3_000, seed=1).assign(when=pd.Timestamp("2026-01-01"), flag=True)
    ref = DriftReference.fit(df)
    assert ref.ignored == ["when"] and ref.features["flag"].kind == "categorical"
    as_dict = ref.model_dump(mode="json")
    cur = _frame(3_000, seed=2).assign(flag=True)
    assert drift_gate(as_dict, cur).details == drift_gate(ref, cur).details
    only = DriftReference.fit(df, features=["stable"])
    assert list(only.features) == ["stable"]


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda ref, cur: drift_gate(ref, cur, warn=0.3, act=0.2), "warn"),
        (lambda ref, cur: drift_gate(ref, cur, drift_share=0), "drift_share"),
        (lambda ref, cur: drift_gate({"features": {}, "n_rows": -1}, cur), "reference"),
        (lambda ref, cur: drift_gate(ref, cur.to_numpy()), "current_df"),
        (lambda ref, cur: DriftReference.fit(cur.iloc[:0]), "df"),
        (lambda ref, cur: DriftReference.fit(cur, features=["nope"]), "features"),
        (lambda ref, cur: DriftReference.fit(cur.assign(stable=np.nan)), "features"),
        (lambda ref, cur: DriftReference.fit(cur, bins=1), "bins"),
    ],
)
def test_bad_input_is_refused(call, field: str) -> None:
    cur = _frame(1_000, seed=2)
    ref = DriftReference.fit(_frame(1_000, seed=1))
    with pytest.raises(InvalidInput) as err:
        call(ref, cur)
    assert err.value.field == field


def test_reference_percentiles_on_large_data_track_the_exact_ones() -> None:
    import numpy as np
    import pandas as pd

    from checks.drift import DriftReference

    x = np.random.default_rng(7).normal(size=1_000_000)
    ref = DriftReference.fit(pd.DataFrame({"x": x})).features["x"]
    exact = np.quantile(x, np.linspace(0, 1, 101))
    assert ref.percentiles[0] == x.min() and ref.percentiles[-1] == x.max()
    assert np.max(np.abs(np.asarray(ref.percentiles[1:-1]) - exact[1:-1])) < 0.02
    assert np.allclose(ref.edges, np.quantile(x, np.linspace(0, 1, 11)[1:-1]))
