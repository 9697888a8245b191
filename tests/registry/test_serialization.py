"""Safe serialization (invariant 8): skops with an allowlist; pickle only behind two opt-ins."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline

from registry import Policy, Registry
from registry.errors import InvalidInput, UnsafeModel
from registry.serialization import DEFAULT_TRUSTED_TYPES, load, save, untrusted_types


class _WritesMarker:
    """Unpickling this calls ``open(marker, "w")``: arbitrary code, observable as a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (str(self.marker), "w"))


def evil_pickle(marker: Path) -> bytes:
    """A pickle whose loading creates ``marker``."""
    return pickle.dumps(_WritesMarker(marker))


class SneakyScaler(TransformerMixin, BaseEstimator):
    """A custom type: not on the default allowlist."""

    def fit(self, x, y=None):  # type: ignore[no-untyped-def]
        self.scale_ = np.abs(np.asarray(x)).max(axis=0) + 1
        return self

    def transform(self, x):  # type: ignore[no-untyped-def]
        return np.asarray(x) / self.scale_


SNEAKY = f"{__name__}.SneakyScaler"


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(1)
    x = rng.randn(150, 3)
    return x, (x[:, 0] - x[:, 2] > 0).astype(int)


def _actions(reg: Registry) -> list[str]:
    return [e.action for e in reg.audit_log()]


def test_the_malicious_pickle_really_is_malicious(tmp_path: Path) -> None:
    """Control: proves the payload runs when unpickled, so the refusals below mean something."""
    marker = tmp_path / "control"
    pickle.loads(evil_pickle(marker)).close()
    assert marker.exists()


# --- pickle is refused unless both opt-ins are given -------------------------------------------


@pytest.mark.parametrize(
    ("allow_pickle", "policy_allows", "missing"),
    [
        (False, False, "allow_pickle=True, policy allow_pickle"),
        (True, False, "policy allow_pickle"),
        (False, True, "allow_pickle=True"),
    ],
)
def test_malicious_pickle_refused(
    backend_url: str, tmp_path: Path, allow_pickle: bool, policy_allows: bool, missing: str
) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "model.pkl"
    evil.write_bytes(evil_pickle(marker))
    reg = Registry(
        url=backend_url, artifact_root=str(tmp_path / "art"), policy=Policy(allow_pickle=policy_allows)
    )
    try:
        reg.register("churn", evil, actor="mallory", artifact_format="pickle")
        with pytest.raises(UnsafeModel, match=f"missing: {missing}$"):
            reg.load_model("churn/1", allow_pickle=allow_pickle, cache_dir=tmp_path / "cache")
        assert not marker.exists()
        assert not (tmp_path / "cache").exists()  # refused before a byte was fetched
        assert "model.pickle_loaded" not in _actions(reg)
    finally:
        reg.close()


def test_pickle_disguised_as_skops_is_refused(registry: Registry, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "model.skops"
    evil.write_bytes(evil_pickle(marker))
    registry.register("churn", evil, actor="mallory", artifact_format="skops")
    with pytest.raises(UnsafeModel, match="not a valid skops file"):
        registry.load_model("churn/1", allow_pickle=True)
    assert not marker.exists()


def test_pickle_with_both_opt_ins_loads_and_is_audited(backend_url: str, tmp_path: Path) -> None:
    x, y = _data()
    model = LogisticRegression().fit(x, y)
    reg = Registry(url=backend_url, artifact_root=str(tmp_path / "art"), policy=Policy(allow_pickle=True))
    try:
        v = reg.register_model("churn", model, actor="alice", allow_pickle=True)
        assert v.artifact.format == "pickle"
        loaded = reg.load_model("churn/1", allow_pickle=True, actor="bob")
        np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
        event = reg.audit_log()[-1]
        assert event.action == "model.pickle_loaded" and event.actor == "bob"
        assert (event.model, event.version) == ("churn", 1)
        assert event.payload["sha256"] == v.artifact.sha256 and event.payload["format"] == "pickle"
        assert reg.verify_audit().ok
    finally:
        reg.close()


def test_register_model_refuses_pickle_without_policy(registry: Registry) -> None:
    with pytest.raises(UnsafeModel, match="policy allow_pickle"):
        registry.register_model("churn", {"w": 1}, actor="alice", allow_pickle=True)
    assert registry.models() == [] and registry.audit_log() == []


# --- skops and the allowlist ---------------------------------------------------------------


def test_skops_round_trip_and_format_tag(registry: Registry) -> None:
    x, y = _data()
    model = LogisticRegression().fit(x, y)
    v = registry.register_model("churn", model, actor="alice", metrics={"acc": 0.9})
    assert v.artifact.format == "skops" and registry.get("churn/1").artifact.format == "skops"
    np.testing.assert_array_equal(registry.load_model("churn/1").predict(x), model.predict(x))
    assert "model.pickle_loaded" not in _actions(registry)


def test_skops_refuses_an_unlisted_type(registry: Registry, backend_url: str, tmp_path: Path) -> None:
    x, y = _data()
    model = make_pipeline(SneakyScaler(), LogisticRegression()).fit(x, y)
    registry.register_model("churn", model, actor="alice")
    # The file itself names SneakyScaler as a type it needs; that must not make it trusted.
    with pytest.raises(UnsafeModel, match=f"untrusted types {SNEAKY};") as info:
        registry.load_model("churn/1")
    assert info.value.fields["types"] == [SNEAKY]
    # Trusted by policy, it loads.
    registry.set_policy(Policy(trusted_types=[SNEAKY]), actor="admin")
    trusting = Registry(url=backend_url, artifact_root=registry.artifact_root)
    try:
        loaded = trusting.load_model("churn/1")
    finally:
        trusting.close()
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_default_allowlist_covers_common_models(tmp_path: Path) -> None:
    x, y = _data()
    for i, model in enumerate(
        [
            RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y),
            HistGradientBoostingClassifier(max_iter=3).fit(x, y),
            KNeighborsClassifier(algorithm="kd_tree").fit(x, y),
        ]
    ):
        path = tmp_path / f"m{i}.skops"
        assert save(model, path) == "skops"
        assert untrusted_types(path, DEFAULT_TRUSTED_TYPES) == []
        loaded = load(path, "skops", policy=Policy())
        np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_untrusted_types_is_computed_against_the_given_list(tmp_path: Path) -> None:
    x, y = _data()
    path = tmp_path / "m.skops"
    save(RandomForestClassifier(n_estimators=2, random_state=0).fit(x, y), path)
    assert untrusted_types(path, []) == ["sklearn.tree._tree.Tree"]
    with pytest.raises(UnsafeModel, match="sklearn.tree._tree.Tree"):
        from registry.serialization import _load_skops

        _load_skops(path, frozenset())


def test_non_model_formats_are_refused(registry: Registry, artifact: Path, tmp_path: Path) -> None:
    registry.register("churn", artifact, actor="alice")  # format "file"
    with pytest.raises(InvalidInput, match="'file' is not a model format"):
        registry.load_model("churn/1")
    with pytest.raises(InvalidInput):
        save(object(), tmp_path / "x", "yaml")
