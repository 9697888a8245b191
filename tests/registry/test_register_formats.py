"""Registering any model file: its format read from the bytes, and its input schema from an example."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from registry import Policy, Registry
from registry.errors import InvalidInput, UnsafeModel
from registry.registration import schema_from_example
from registry.serialization import detect_format, resolve_format
from tests.registry.test_serialization import evil_pickle


def _frame(n: int = 60) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(3)
    x = pd.DataFrame(
        {"age": rng.integers(18, 80, n), "income": rng.normal(50.0, 10.0, n), "score": rng.random(n)}
    )
    return x, (x["income"] > 50).to_numpy().astype(int)


@pytest.fixture(scope="module")
def fitted() -> tuple[LogisticRegression, pd.DataFrame]:
    x, y = _frame()
    return LogisticRegression(max_iter=300).fit(x, y), x


@pytest.fixture
def files(tmp_path: Path, fitted) -> dict[str, Path]:
    """The same model in every format, some under a misleading name."""
    model, _ = fitted
    out = {
        "skops": tmp_path / "model.skops",
        "joblib": tmp_path / "model.joblib",
        "joblib_z": tmp_path / "packed.joblib",
        "pickle": tmp_path / "model.pkl",
        "pickle_as_skops": tmp_path / "renamed.skops",
        "skops_as_bin": tmp_path / "renamed.bin",
        "joblib_as_pkl": tmp_path / "arrays.pkl",
        "zip": tmp_path / "archive.skops",
        "text": tmp_path / "notes.pkl",
    }
    sio.dump(model, out["skops"])
    joblib.dump(model, out["joblib"])
    joblib.dump(model, out["joblib_z"], compress=3)
    out["pickle"].write_bytes(pickle.dumps(model))
    out["pickle_as_skops"].write_bytes(pickle.dumps(model))
    out["skops_as_bin"].write_bytes(out["skops"].read_bytes())
    joblib.dump(np.arange(10), out["joblib_as_pkl"])  # joblib's array wrapper, under .pkl
    with zipfile.ZipFile(out["zip"], "w") as zf:
        zf.writestr("readme.txt", "not a model")
    out["text"].write_text("hello")
    return out


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("skops", "skops"),
        ("joblib", "joblib"),
        ("joblib_z", "joblib"),
        ("pickle", "pickle"),
        ("pickle_as_skops", "pickle"),  # the content wins over the name
        ("skops_as_bin", "skops"),
        ("joblib_as_pkl", "joblib"),
        ("zip", "file"),
        ("text", "file"),
    ],
)
def test_format_is_read_from_the_content(files: dict[str, Path], key: str, expected: str) -> None:
    assert detect_format(files[key]) == expected


def test_detection_never_unpickles(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "model.skops"
    evil.write_bytes(evil_pickle(marker))
    assert detect_format(evil) == "pickle"
    with pytest.raises(InvalidInput, match="is a pickle file, not skops"):
        resolve_format(evil, "skops")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("key", "claim", "refused"),
    [
        ("pickle_as_skops", "skops", "renamed.skops is a pickle file, not skops; give --format pickle"),
        ("skops", "pickle", "model.skops is a skops file, not pickle"),
        ("skops", "joblib", "model.skops is a skops file, not joblib"),
        ("joblib_as_pkl", "pickle", "arrays.pkl is a joblib file, not pickle"),
        ("text", "skops", "notes.pkl is not a model format we recognise, not skops"),
        ("zip", "skops", "archive.skops is not a model format we recognise"),
        ("skops", "onnx", "'onnx' is not one of skops, joblib, pickle, file"),
    ],
)
def test_a_claim_the_content_contradicts_is_refused(
    files: dict[str, Path], key: str, claim: str, refused: str
) -> None:
    with pytest.raises(InvalidInput, match=refused.replace(".", r"\.")) as err:
        resolve_format(files[key], claim)
    assert err.value.field == "format" and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("key", "claim"), [("pickle", "joblib"), ("skops", "file"), ("pickle", "file"), ("joblib", "joblib")]
)
def test_claims_the_content_allows(files: dict[str, Path], key: str, claim: str) -> None:
    assert resolve_format(files[key], claim) == claim


# --- the input schema from an example --------------------------------------------------------


def test_register_model_infers_the_schema_from_the_example(tmp_path: Path, fitted) -> None:
    model, x = fitted
    reg = Registry(url=f"sqlite:///{tmp_path / 'r.db'}", artifact_root=str(tmp_path / "a"), policy=Policy())
    try:
        shuffled = x[["score", "age", "income"]].head(5)  # the order comes from feature_names_in_
        v = reg.register_model("churn", model, actor="alice", input_example=shuffled)
        assert [(c.name, c.dtype) for c in v.input_schema] == [
            ("age", "int64"),
            ("income", "float64"),
            ("score", "float64"),
        ]
        assert reg.get("churn/1").input_schema == v.input_schema
        # No row of the example is kept: not on the version, not in its audit event.
        stored = json.dumps(reg.get("churn/1").model_dump(mode="json")) + json.dumps(
            [e.payload for e in reg.audit_log()], default=str
        )
        assert repr(float(shuffled["income"].iloc[0]))[:8] not in stored
        with pytest.raises(InvalidInput, match="not both"):
            reg.register_model(
                "churn", model, input_example=x, input_schema=[{"name": "a", "dtype": "int64"}]
            )
        assert [v.version for v in reg.versions("churn")] == [1]  # nothing half-written
    finally:
        reg.close()


@pytest.mark.parametrize(
    ("example", "refused"),
    [
        (lambda x: x.drop(columns=["score"]), r"missing \['score'\]"),
        (lambda x: x.assign(extra=1), r"not features \['extra'\]"),
        (lambda x: x.rename(columns={"age": "AGE"}), r"missing \['age'\], not features \['AGE'\]"),
        (lambda x: x.to_numpy()[:, :2], "2 columns, the model has 3 features"),
        (lambda x: x["age"].to_numpy(), "a 1-D array"),
        (lambda x: "age,income", "a str; give a DataFrame"),
        (lambda x: x.assign(score=x["score"].astype("complex128")), "score: dtype 'complex128' cannot"),
        (lambda x: x.iloc[:, []], "no columns"),
    ],
)
def test_an_example_that_does_not_fit_the_model_is_refused(fitted, example, refused: str) -> None:
    model, x = fitted
    with pytest.raises(InvalidInput, match=refused) as err:
        schema_from_example(example(x), model)
    assert err.value.field == "input_example"


def test_examples_without_names_need_the_model_names() -> None:
    x, y = _frame()
    unnamed = LogisticRegression(max_iter=300).fit(x.to_numpy(), y)  # no feature_names_in_
    with pytest.raises(InvalidInput, match="no column names"):
        schema_from_example(x.to_numpy(), unnamed)
    assert schema_from_example(x.head(2), unnamed)[0] == {"name": "age", "dtype": "int64"}
    named = LogisticRegression(max_iter=300).fit(x, y)
    assert [c["name"] for c in schema_from_example(x.to_numpy(), named)] == ["age", "income", "score"]
    assert schema_from_example({"a": [1.5], "b": ["x"]})[1] == {"name": "b", "dtype": "str"}
    with pytest.raises(InvalidInput, match="column names must be strings"):
        schema_from_example(pd.DataFrame([[1, 2]]))


# --- govflow register ------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path):
    env = {
        **os.environ,
        "GOVFLOW_REGISTRY_URL": f"sqlite:///{tmp_path / 'registry.db'}",
        "GOVFLOW_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "GOVFLOW_ACTOR": "alice",
    }
    env.pop("GOVFLOW_POLICY", None)

    def run(*args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "govflow", *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == expect, (args, proc.returncode, proc.stdout, proc.stderr)
        if expect == 2:
            assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
        return proc

    run.url = env["GOVFLOW_REGISTRY_URL"]  # type: ignore[attr-defined]
    run.root = env["GOVFLOW_ARTIFACT_ROOT"]  # type: ignore[attr-defined]
    return run


def _registered(cli, *args: str) -> dict:
    return json.loads(cli("register", "churn", *args, "--json").stdout)


def test_cli_register_detects_formats_and_reads_schemas(
    cli, files: dict[str, Path], fitted, tmp_path: Path
) -> None:
    _, x = fitted
    example = tmp_path / "example.csv"
    x.head(20).to_csv(example, index=False)
    got = _registered(cli, "--artifact", str(files["skops"]), "--input-example", str(example))
    assert (got["artifact_format"], got["input_columns"]) == ("skops", 3)
    parquet = tmp_path / "example.parquet"
    x.head(3).to_parquet(parquet)
    assert (
        _registered(cli, "--artifact", str(files["joblib"]), "--input-example", str(parquet))[
            "artifact_format"
        ]
        == "joblib"
    )
    assert _registered(cli, "--artifact", str(files["pickle_as_skops"]))["artifact_format"] == "pickle"
    assert _registered(cli, "--artifact", str(files["text"]))["artifact_format"] == "file"
    assert (
        _registered(cli, "--artifact", str(files["pickle"]), "--format", "joblib")["artifact_format"]
        == "joblib"
    )
    schema = tmp_path / "schema.json"
    schema.write_text(
        json.dumps([{"name": "age", "dtype": "int64"}, {"name": "when", "dtype": "datetime64[ns]"}])
    )
    assert (
        _registered(cli, "--artifact", str(files["skops"]), "--input-schema", str(schema))["input_columns"]
        == 2
    )

    reg = Registry(url=cli.url, artifact_root=cli.root, policy=Policy())
    try:
        v1 = reg.get("churn/1")
        assert [(c.name, c.dtype) for c in v1.input_schema] == [
            ("age", "int64"),
            ("income", "float64"),
            ("score", "float64"),
        ]
        assert reg.get("churn/2").input_schema == v1.input_schema
        assert reg.get("churn/6").input_schema[1].dtype == "datetime64[ns]"
        assert hasattr(reg.load_model("churn/1"), "predict")
        # Registered freely; loading pickle or joblib still needs the explicit opt-in.
        for ref in ("churn/2", "churn/3", "churn/5"):
            with pytest.raises(UnsafeModel, match="missing: allow_pickle=True, policy allow_pickle"):
                reg.load_model(ref)
    finally:
        reg.close()


def test_cli_register_refusals_are_one_line(cli, files: dict[str, Path], tmp_path: Path) -> None:
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("[{name: age}]")
    bad_dtype = tmp_path / "dtype.json"
    bad_dtype.write_text(json.dumps([{"name": "age", "dtype": "complex128"}]))
    no_dtype = tmp_path / "nodtype.json"
    no_dtype.write_text(json.dumps([{"name": "age"}]))
    twice = tmp_path / "twice.json"
    twice.write_text(json.dumps([{"name": "age", "dtype": "int64"}, {"name": "age", "dtype": "float64"}]))
    text_example = tmp_path / "example.txt"
    text_example.write_text("age\n1\n")
    cases = [
        (
            ["--artifact", str(files["pickle_as_skops"]), "--format", "skops"],
            "format: renamed.skops is a pickle file",
        ),
        (["--artifact", str(files["skops"]), "--format", "onnx"], "format: 'onnx' is not one of"),
        (
            ["--artifact", str(files["skops"]), "--input-schema", str(bad_json)],
            "--input-schema: bad.json is not valid JSON",
        ),
        (
            ["--artifact", str(files["skops"]), "--input-schema", str(bad_dtype)],
            "--input-schema: column age: dtype 'complex128'",
        ),
        (
            ["--artifact", str(files["skops"]), "--input-schema", str(no_dtype)],
            "--input-schema: item 0: give exactly",
        ),
        (
            ["--artifact", str(files["skops"]), "--input-schema", str(twice)],
            "--input-schema: item 1: column 'age' twice",
        ),
        (
            ["--artifact", str(files["skops"]), "--input-example", str(text_example)],
            "--input-example: example.txt: give a .csv",
        ),
        (
            ["--artifact", str(files["skops"]), "--input-example", str(tmp_path / "none.csv")],
            "--input-example: ",
        ),
        (
            [
                "--artifact",
                str(files["skops"]),
                "--input-example",
                str(bad_json),
                "--input-schema",
                str(bad_json),
            ],
            "not both",
        ),
    ]
    for args, message in cases:
        proc = cli("register", "churn", *args, expect=2)
        assert message in proc.stderr, (args, proc.stderr)
    reg = Registry(url=cli.url, artifact_root=cli.root, policy=Policy())
    try:
        assert reg.models() == []  # every refusal came before anything was written
    finally:
        reg.close()


def test_the_schema_reaches_the_server_through_the_client(registry_server, fitted) -> None:
    """register_model(input_example=) over HTTP: the client infers, the server stores the same schema."""
    model, x = fitted
    h = registry_server
    bob = h.client(h.token("pipeline", name="bob"))
    v = bob.register_model("churn", model, input_example=x.head(3))
    stored = h.client().get("churn/1")
    assert stored.input_schema == v.input_schema and [c.name for c in stored.input_schema] == [
        "age",
        "income",
        "score",
    ]
    assert stored.artifact.format == "skops"
    with pytest.raises(InvalidInput, match=r"missing \['score'\]"):
        bob.register_model("churn", model, input_example=x[["age", "income"]])
    assert [v.version for v in h.client().versions("churn")] == [1]


def test_an_unreadable_artifact_is_one_line_not_an_os_error() -> None:
    """Reading the head of a file that fails with an I/O error (here /proc/self/mem) is refused."""
    from registry.errors import InvalidInput
    from registry.serialization import detect_format

    with pytest.raises(InvalidInput, match="artifact: /proc/self/mem: cannot read"):
        detect_format(Path("/proc/self/mem"))
