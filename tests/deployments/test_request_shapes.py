"""Any registered model can be served: a model trained in-process and registered with an input
example, or a .skops file registered from the command line, answers every MLflow request shape,
with probabilities on request; malformed bodies in every shape are one-line refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from registry import Policy, Registry
from registry.errors import InvalidInput
from tests.deployments.support import APPROVER, AUTH, REGISTRANT, make_data, probe_records, train, wait_for

SHAPES = ["records", "bare", "dataframe_records", "dataframe_split", "instances", "inputs", "columnar"]


def _promote(reg: Registry, name: str, version: int) -> None:
    reg.transition(name, version, "staging", actor=REGISTRANT)
    reg.approve(name, version, actor=APPROVER)
    reg.transition(name, version, "production", actor=REGISTRANT)


def body(shape: str, rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any] | list[Any]:
    """``rows`` in one request shape."""
    if shape == "bare":
        return rows
    if shape == "dataframe_split":
        columns = list(rows[0])
        split = {
            "columns": columns,
            "data": [[r[c] for c in columns] for r in rows],
            "index": list(range(len(rows))),
        }
        return {"dataframe_split": split, **extra}
    if shape == "columnar":
        return {"inputs": {c: [r[c] for r in rows] for c in rows[0]}, **extra}
    return {shape: rows, **extra}


@pytest.fixture(scope="module")
def story(tmp_path_factory) -> Iterator[dict[str, Any]]:
    """No flow: a pipeline fitted on a DataFrame, registered with an input example, in production,
    served in-process; a second model without predict_proba; a third registered with no schema."""
    from sklearn.linear_model import RidgeClassifier

    from deployments.server import ServerThread
    from deployments.serving import create_app

    home = tmp_path_factory.mktemp("shapes")
    reg = Registry(url=f"sqlite:///{home / 'registry.db'}", artifact_root=str(home / "art"), policy=Policy())
    model = train()
    frame, y = make_data()
    v = reg.register_model("churn", model, actor=REGISTRANT, input_example=frame.head(10))
    _promote(reg, "churn", v.version)
    ridge = train().set_params(clf=RidgeClassifier()).fit(frame, y)
    _promote(reg, "ridge", reg.register_model("ridge", ridge, actor=REGISTRANT, input_example=frame).version)
    _promote(reg, "bare", reg.register_model("bare", model, actor=REGISTRANT).version)
    servers = {
        "churn": ServerThread(create_app(reg, "churn", poll=0)).start(),
        "small": ServerThread(create_app(reg, "churn", poll=0, max_body_bytes=4000, max_rows=3)).start(),
        "ridge": ServerThread(create_app(reg, "ridge", poll=0)).start(),
        "bare": ServerThread(create_app(reg, "bare", poll=0, no_schema=True)).start(),
    }
    clients = {k: httpx.Client(base_url=s.url, timeout=30) for k, s in servers.items()}
    try:
        yield {"reg": reg, "model": model, "clients": clients, "version": v.version}
    finally:
        for c in clients.values():
            c.close()
        for s in servers.values():
            s.stop()
        reg.close()


def _expected(model: Any, rows: list[dict[str, Any]], proba: bool = False) -> Any:
    frame = pd.DataFrame(rows).astype({"age": "int64", "income": "float64", "active": "bool"})
    return (model.predict_proba(frame) if proba else model.predict(frame)).tolist()


def test_the_version_records_the_example_schema(story) -> None:
    schema = story["reg"].get(f"churn/{story['version']}").input_schema
    assert [(c.name, c.dtype) for c in schema] == [
        ("age", "int64"),
        ("income", "float64"),
        ("plan", "str"),
        ("active", "bool"),
    ]


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_predicts_the_same(story, shape: str) -> None:
    rows = probe_records(12)
    r = story["clients"]["churn"].post("/predict", json=body(shape, rows))
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["predictions"] == _expected(story["model"], rows)
    assert (got["model"], got["version"]) == ("churn", story["version"])
    assert r.headers["x-model-version"] == str(story["version"])


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_gives_probabilities(story, shape: str) -> None:
    rows = probe_records(6)
    client = story["clients"]["churn"]
    asked = client.post("/predict", json=body(shape, rows, proba=True)) if shape != "bare" else None
    routed = client.post("/predict_proba", json=body(shape, rows))
    for r in filter(None, (asked, routed)):
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["classes"] == [0, 1]
        np.testing.assert_allclose(got["predictions"], _expected(story["model"], rows, proba=True), rtol=1e-9)
        np.testing.assert_allclose(np.sum(got["predictions"], axis=1), 1.0)


def test_a_model_without_predict_proba_is_400_naming_it(story) -> None:
    client = story["clients"]["ridge"]
    rows = probe_records(3)
    assert client.post("/predict", json={"records": rows}).status_code == 200
    for r in (
        client.post("/predict_proba", json={"records": rows}),
        client.post("/predict", json=body("dataframe_split", rows, proba=True)),
    ):
        assert r.status_code == 400
        assert r.json()["detail"] == "ridge/1: a Pipeline has no predict_proba; ask /predict without proba"


def _refusal(r: httpx.Response, status: int = 422) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text[:300])
    got = r.json()
    assert got["detail"] and "\n" not in got["detail"]
    return got


@pytest.mark.parametrize("shape", SHAPES)
def test_strings_where_numbers_belong_are_refused_in_every_shape(story, shape: str) -> None:
    rows = probe_records(3)
    rows[1]["age"] = "forty"
    rows[2]["income"] = "lots"
    got = _refusal(story["clients"]["churn"].post("/predict", json=body(shape, rows)))
    field = {"bare": "records", "columnar": "inputs"}.get(shape, shape)
    assert got["field"] == field
    assert got["detail"] == (
        f"{field}: wrong types: age (expected int64, got string), income (expected float64, got string)"
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_missing_and_unknown_columns_are_named_in_every_shape(story, shape: str) -> None:
    rows = [{"colour": "red", "plan": r["plan"], "active": r["active"]} for r in probe_records(2)]
    got = _refusal(story["clients"]["churn"].post("/predict", json=body(shape, rows)))
    field = {"bare": "records", "columnar": "inputs"}.get(shape, shape)
    assert got["detail"] == f"{field}: unknown columns: colour; missing columns: age, income"
    assert [(p["problem"], p["column"], p["rows"]) for p in got["problems"]] == [
        ("missing", "age", [0, 1]),
        ("missing", "income", [0, 1]),
        ("unknown", "colour", [0, 1]),
    ]


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        (
            {
                "dataframe_split": {
                    "columns": ["age", "income", "colour", "active"],
                    "data": [[30, 1.0, "red", True]],
                }
            },
            "dataframe_split: unknown columns: colour; missing columns: plan",
        ),
        (
            {
                "dataframe_split": {
                    "columns": ["age", "income", "plan", "active"],
                    "data": [[30, 1.0, "pro", True], [30, 1.0]],
                }
            },
            "dataframe_split.data: rows [1] are not arrays of 4 values (1 rows in all)",
        ),
        (
            {"dataframe_split": {"columns": ["age", "age", "plan", "active"], "data": [[1, 2, "pro", True]]}},
            "dataframe_split.columns: age given twice",
        ),
        (
            {
                "dataframe_split": {
                    "columns": ["age", "income", "plan", "active"],
                    "data": [[30, 1.0, "pro", True]],
                    "index": [0, 1],
                }
            },
            "dataframe_split.index: give one label per data row (1)",
        ),
        ({"dataframe_split": [[1, 2]]}, 'dataframe_split: give {"columns": [...], "data": [[...], ...]}'),
        ({"dataframe_split": {"data": [[1]]}}, "dataframe_split: columns and data are required"),
        (
            {"inputs": {"age": [1, 2], "income": [1.0]}},
            "inputs: columns have different lengths (age: 2, income: 1)",
        ),
        ({"instances": [[30, 1.0, "pro", True]]}, "instances: items [0] are not JSON objects"),
        ({"records": [], "dataframe_split": {}}, "got both records and dataframe_split"),
        ({"instances": [], "inputs": []}, "got both instances and inputs"),
        (
            {},
            "body: give exactly one of records, dataframe_records, dataframe_split, instances, inputs; got none",
        ),
        ({"records": [{"age": 1}], "params": {}}, "body: unexpected keys params"),
        ({"records": [{"age": 1}], "proba": "yes"}, "proba: string, give true or false"),
        (
            {"dataframe_records": [{"age": 30, "income": 1.0, "plan": "pro", "active": 1}]},
            "active (expected bool, got integer)",
        ),
    ],
)
def test_malformed_bodies_are_one_line(story, payload: dict[str, Any], detail: str) -> None:
    got = _refusal(story["clients"]["churn"].post("/predict", json=payload))
    assert detail in got["detail"]


@pytest.mark.parametrize("shape", SHAPES)
def test_limits_hold_in_every_shape(story, shape: str) -> None:
    client = story["clients"]["small"]
    assert client.post("/predict", json=body(shape, probe_records(3))).status_code == 200
    many = _refusal(client.post("/predict", json=body(shape, probe_records(4))))
    assert "4 rows, at most 3 per request" in many["detail"]
    huge = _refusal(client.post("/predict", json=body(shape, probe_records(200))), 413)
    assert huge["detail"] == "body: larger than 4000 bytes"


def test_no_schema_is_served_only_when_asked(story) -> None:
    from deployments.serving import create_app

    with pytest.raises(InvalidInput, match=r"^bare/1: the version records no input columns; .* --no-schema$"):
        create_app(story["reg"], "bare", poll=0)
    client = story["clients"]["bare"]
    rows = probe_records(5)
    shuffled = [dict(reversed(list(r.items()))) for r in rows]  # passed through in the model's order
    for shape in ("records", "dataframe_split", "columnar"):
        r = client.post("/predict", json=body(shape, shuffled))
        assert r.status_code == 200 and r.json()["predictions"] == _expected(story["model"], rows), r.text
    ragged = _refusal(client.post("/predict", json={"records": [rows[0], {"age": 1}]}))
    assert ragged["detail"].startswith("records: missing columns: active, income, plan")
    nested = _refusal(client.post("/predict", json={"records": [{**rows[0], "plan": {"x": 1}}]}))
    assert nested["detail"] == "records: wrong types: plan (expected a JSON scalar, got object)"
    # Keys the model was not fitted on, or a number no float holds: the model's refusal, as a 422.
    other = _refusal(client.post("/predict", json={"records": [{"x": 1}]}))
    assert other["detail"].startswith("records: the model refused the input")
    huge = b'{"records": [{"age": 1' + b"0" * 400 + b', "income": 1.0, "plan": "pro", "active": true}]}'
    r = client.post("/predict", content=huge, headers={"content-type": "application/json"})
    assert _refusal(r)["detail"].startswith("records: the model refused the input")


def test_a_schemaless_version_swapped_in_is_503_until_one_with_a_schema(
    sqlite_registry, estimators, serve_app
) -> None:
    reg = sqlite_registry
    _promote(
        reg,
        "churn",
        reg.register_model("churn", estimators[0], actor=REGISTRANT, input_example=make_data(5)[0]).version,
    )
    srv = serve_app(reg, poll=0)
    _promote(reg, "churn", reg.register_model("churn", estimators[1], actor=REGISTRANT).version)
    with httpx.Client(base_url=srv.url, timeout=10) as client:
        assert client.post("/reload", headers=AUTH).json()["version"] == 2
        got = _refusal(client.post("/predict", json=probe_records(2)), 503)
        assert got["detail"].startswith("churn/2: the version records no input columns;")
        _promote(
            reg,
            "churn",
            reg.register_model(
                "churn", estimators[1], actor=REGISTRANT, input_example=make_data(5)[0]
            ).version,
        )
        assert client.post("/reload", headers=AUTH).json()["version"] == 3
        assert client.post("/predict", json=probe_records(2)).status_code == 200


# --- the command line: govflow register a .skops file, then govflow serve ------------------------


def _cli_env(reg: Registry) -> dict[str, str]:
    env = {
        **os.environ,
        "GOVFLOW_REGISTRY_URL": reg.url,
        "GOVFLOW_ARTIFACT_ROOT": reg.artifact_root,
        "GOVFLOW_ACTOR": REGISTRANT,
    }
    env.pop("GOVFLOW_POLICY", None)
    return env


def _listening(log: Path) -> str | None:
    for line in log.read_text().splitlines():
        if line.startswith("{") and json.loads(line).get("event") == "listening":
            return json.loads(line)["url"]
    return None


def test_cli_register_skops_with_example_then_serve(sqlite_registry, tmp_path: Path) -> None:
    import skops.io as sio

    reg = sqlite_registry
    model = train()
    artifact = tmp_path / "model.skops"
    sio.dump(model, artifact)
    example = tmp_path / "example.csv"
    make_data(30)[0].to_csv(example, index=False)
    env = _cli_env(reg)
    govflow = [sys.executable, "-m", "govflow"]
    bare = subprocess.run(
        [*govflow, "register", "plain", "--artifact", str(artifact)], env=env, capture_output=True, text=True
    )
    assert bare.returncode == 0, bare.stderr
    done = subprocess.run(
        [
            *govflow,
            "register",
            "churn",
            "--artifact",
            str(artifact),
            "--input-example",
            str(example),
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["artifact_format"] == "skops"
    _promote(reg, "churn", 1)
    _promote(reg, "plain", 1)
    refused = subprocess.run(
        [*govflow, "serve", "plain", "--port", "0"], env=env, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "plain/1: the version records no input columns" in refused.stderr

    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [*govflow, "serve", "churn", "--port", "0", "--poll", "30", "--log-level", "warning"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = wait_for(lambda: proc.poll() is not None or _listening(log), timeout=90, what="listening")
        assert proc.poll() is None, log.read_text()
        rows = probe_records(4)

        def answer() -> httpx.Response | None:
            try:
                return httpx.post(f"{url}/predict", json=body("dataframe_split", rows), timeout=5)
            except httpx.HTTPError:
                return None

        r = wait_for(answer, timeout=30, what="the first prediction")
        assert r.status_code == 200 and r.json()["predictions"] == _expected(model, rows)
        p = httpx.post(f"{url}/predict_proba", json=body("instances", rows), timeout=5)
        assert p.status_code == 200 and np.allclose(
            p.json()["predictions"], _expected(model, rows, proba=True)
        )
    finally:
        proc.terminate()
        proc.wait(15)
