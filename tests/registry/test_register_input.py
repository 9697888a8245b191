"""Registry input on every backend: metrics are numbers, impact's arguments are strings, and a
missing model names the nearest stored name and the registry that was read."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from registry import Policy, Registry
from registry.db.engine import Database
from registry.errors import GovflowError, InvalidInput, ModelNotFound


def _count(reg: Registry, table: str) -> int:
    with reg.db.engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


# --- metrics are numbers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["0.5", "1", "", b"0.5", [0.5], {"v": 0.5}, None, True, float("nan"), float("-inf"), 10**400]
)
def test_a_metric_that_is_not_a_finite_number_is_refused_by_name_and_nothing_is_written(
    registry: Registry, artifact: Path, value: object
) -> None:
    with pytest.raises(InvalidInput) as refused:
        registry.register("churn", artifact, actor="alice", metrics={"auc": value})
    assert refused.value.field == "metric auc" and str(refused.value).startswith("metric auc: ")
    assert (_count(registry, "versions"), _count(registry, "audit_events")) == (0, 0)


def test_int_and_float_metrics_are_stored_as_floats(registry: Registry, artifact: Path) -> None:
    v = registry.register("churn", artifact, actor="alice", metrics={"auc": 0.91, "n": 3})
    assert registry.get(v.ref).metrics == {"auc": 0.91, "n": 3.0}


def test_a_string_metric_sent_over_http_is_refused_by_name(server_harness, tmp_path: Path) -> None:
    server_harness.open(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path, policy=Policy(), audited_admin=False)
    try:
        token = server_harness.token("pipeline")
        for metrics in ({"auc": "0.5"}, {"auc": True}, {"auc": None}):
            answer = httpx.post(
                f"{server_harness.url}/api/v1/models/churn/versions",
                json={"sha256": "a" * 64, "artifact_format": "file", "fields": {"metrics": metrics}},
                headers={"Authorization": f"Bearer {token}"},
            )
            doc = answer.json()
            assert answer.status_code == 400, (metrics, doc)
            assert (doc["govflow_error"], doc["field"]) == ("InvalidInput", "metric auc"), doc
        assert _count(server_harness.registry, "versions") == 0
    finally:
        server_harness.shut()


# --- impact's arguments ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"commit": 123}, "commit"),
        ({"commit": ["abcd1234"]}, "commit"),
        ({"commit": b"abcd1234"}, "commit"),
        ({"dataset": 1.5}, "dataset"),
        ({"dataset": Path("/data/train.csv")}, "dataset"),
        ({"digest": 0xABCD}, "digest"),
        ({"commit": "abcd\x00"}, "commit"),
        ({"commit": " ab "}, "commit"),
        ({}, "dataset"),
    ],
)
def test_impact_refuses_arguments_that_are_not_strings_by_name(
    registry: Registry, kwargs: dict, field: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        registry.impact(**kwargs)
    assert refused.value.field == field, refused.value


def test_impact_still_finds_a_commit_given_in_capitals_with_spaces(registry: Registry, artifact: Path) -> None:
    registry.register("churn", artifact, actor="alice", lineage={"code": {"commit": "abcdef1234"}})
    hits = registry.impact(commit="  ABCDEF12 ")
    assert [(h["model"], h["version"]) for h in hits] == [("churn", 1)]


# --- a missing model --------------------------------------------------------------------------


def _location(registry) -> str:
    """Where the registry under test lives, as an error should name it."""
    server = getattr(registry, "server", None)
    return server.url if server is not None else registry.db.location


def test_a_model_name_typo_suggests_the_nearest_name_and_names_the_registry(
    registry: Registry, artifact: Path
) -> None:
    registry.register("credit-risk", artifact, actor="alice")
    registry.register("churn", artifact, actor="alice")
    calls = [
        lambda: registry.get("credit-risks/1"),
        lambda: registry.get_version("credit_risk", 1),
        lambda: registry.versions("credit-rsk"),
        lambda: registry.approve("credit-risc", 1, actor="bob"),
        lambda: registry.resolve("credit-risks@production"),
    ]
    for call in calls:
        with pytest.raises(ModelNotFound) as missing:
            call()
        err = missing.value
        assert "did you mean 'credit-risk'?" in str(err), str(err)
        if getattr(registry, "server", None) is None:  # over HTTP the suggestion is in the message
            assert err.suggestion == "credit-risk"
        assert str(err).endswith(f"(registry: {_location(registry)})"), str(err)
        assert "\n" not in str(err)
    with pytest.raises(ModelNotFound) as far:
        registry.get("fraud/1")
    assert "did you mean" not in str(far.value) and _location(registry) in str(far.value)


def test_a_server_names_its_own_url_not_its_database(registry, artifact: Path) -> None:
    if getattr(registry, "server", None) is None:
        pytest.skip("over HTTP only")
    registry.register("churn", artifact, actor="alice")
    with pytest.raises(ModelNotFound) as missing:
        registry.get("chrun/1")
    database = registry.server.registry.db.location
    assert database not in str(missing.value) and registry.server.url in str(missing.value)


def test_a_registry_is_named_without_its_password(tmp_path: Path) -> None:
    from registry.remote.transport import safe_location

    assert Database("postgresql+psycopg://ops:s3cret@db.internal:5432/govflow").location == (
        "postgresql+psycopg://ops@db.internal:5432/govflow"
    )
    assert Database(f"sqlite:///{tmp_path}/sub/../r.db").location == str(tmp_path / "r.db")
    assert safe_location("https://ops:s3cret@govflow.internal") == "https://govflow.internal"
    assert safe_location("https://govflow.internal:8443") == "https://govflow.internal:8443"


def test_model_not_found_is_still_a_govflow_error_without_a_registry() -> None:
    err = ModelNotFound("model 'x' not found", model="x")
    assert isinstance(err, GovflowError) and str(err) == "model 'x' not found"
