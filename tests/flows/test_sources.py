"""monitor.source: files, globs, newest file or partition, local and S3, CSV and Parquet, windows.

No Prefect here: flows/sources.py is plain pandas and boto3 against real files and a real
S3-compatible server (moto on loopback).
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml

from flows.config import PipelineConfig, SourceSpec
from flows.data import ensure_example, load
from flows.sources import read_path, read_recent, read_slice, read_source
from registry.errors import InvalidInput
from tests.fixtures.s3 import BUCKET

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "flows" / "examples" / "credit-risk.yaml"
BASE = {"model_name": "credit-risk", "target": "default", "data": {"path": "d.csv"}}


def _frame(*ids: int) -> pd.DataFrame:
    return pd.DataFrame({"id": list(ids), "x": [float(i) / 10 for i in ids]})


def _put(path: Path, frame: pd.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".parquet", ".pq") or not path.suffix:
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def _read(folder: Path, **spec):
    return read_source(SourceSpec(**spec), str(folder))


def _config(folder: Path, source) -> Path:
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump({**BASE, "monitor": {"source": source}}))
    return path


def _one_line(exc: InvalidInput, field: str) -> str:
    text = str(exc)
    assert "\n" not in text and exc.field == field and field in text, text
    return text


# --- where -----------------------------------------------------------------------------------


def test_a_relative_file_resolves_against_the_config_folder(tmp_path, monkeypatch) -> None:
    _put(tmp_path / "data" / "recent.csv", _frame(1, 2, 3))
    config = PipelineConfig.load(_config(tmp_path, "data/recent.csv"))  # the string shorthand
    monkeypatch.chdir(tmp_path.parent)  # the working folder does not matter
    frame, uri = read_recent(config)
    assert frame["id"].tolist() == [1, 2, 3]
    assert uri == f"file://{tmp_path}/data/recent.csv"


def test_a_glob_reads_every_match_in_name_order(tmp_path) -> None:
    for name, ids in (("b.csv", (3, 4)), ("a.csv", (1, 2)), ("c.csv", (5,))):
        _put(tmp_path / "in" / name, _frame(*ids))
    (tmp_path / "in" / "notes.txt").write_text("not data")
    _put(tmp_path / "in" / "sub" / "d.csv", _frame(9))  # * does not cross a folder
    got = _read(tmp_path, path="in/*.csv")
    assert got.frame["id"].tolist() == [1, 2, 3, 4, 5]
    assert [f.rsplit("/", 1)[1] for f in got.files] == ["a.csv", "b.csv", "c.csv"]
    assert got.uri == f"file://{tmp_path}/in/*.csv"


def test_newest_file_is_chosen_by_name_not_by_modification_time(tmp_path) -> None:
    _put(tmp_path / "days" / "2026-11-09.csv", _frame(9))
    _put(tmp_path / "days" / "2026-11-10.csv", _frame(10))
    _put(tmp_path / "days" / "2026-01-01.csv", _frame(1))  # written last: the newest mtime
    got = _read(tmp_path, path="days/", pick="newest")
    assert got.frame["id"].tolist() == [10]
    assert got.uri == f"file://{tmp_path}/days/2026-11-10.csv"
    everything = _read(tmp_path, path="days")  # a folder, with or without the slash
    assert everything.frame["id"].tolist() == [1, 9, 10]


def test_newest_partition_reads_all_its_files_and_skips_markers(tmp_path) -> None:
    events = tmp_path / "events"
    _put(events / "dt=2026-11-28" / "part-0.parquet", _frame(1, 2))
    _put(events / "dt=2026-11-29" / "part-1.parquet", _frame(5))
    _put(events / "dt=2026-11-29" / "part-0.parquet", _frame(3, 4))
    (events / "dt=2026-11-29" / "_SUCCESS").write_text("")
    (events / "dt=2026-11-29" / ".part-0.parquet.crc").write_text("crc")
    got = _read(tmp_path, path="events/", pick="newest")
    assert got.frame["id"].tolist() == [3, 4, 5]
    assert got.uri == f"file://{tmp_path}/events/dt=2026-11-29/"
    assert len(got.files) == 2
    by_glob = _read(tmp_path, path="events/dt=*/*.parquet", pick="newest")
    assert by_glob.frame["id"].tolist() == [3, 4, 5] and by_glob.uri == got.uri
    assert _read(tmp_path, path="events/").frame["id"].tolist() == [1, 2, 3, 4, 5]


def test_parquet_by_suffix_or_by_format_and_mixed_with_csv(tmp_path) -> None:
    _put(tmp_path / "mixed" / "a.csv", _frame(1))
    _put(tmp_path / "mixed" / "b.parquet", _frame(2))
    assert _read(tmp_path, path="mixed/").frame["id"].tolist() == [1, 2]
    _put(tmp_path / "spark" / "part-00000", _frame(7))  # no suffix: the format says what it is
    with pytest.raises(InvalidInput) as exc:
        _read(tmp_path, path="spark/")
    _one_line(exc.value, "monitor.source.path")
    assert _read(tmp_path, path="spark/", format="parquet").frame["id"].tolist() == [7]


# --- windows ---------------------------------------------------------------------------------


def test_row_window_keeps_the_last_rows_in_time_order(tmp_path) -> None:
    frame = _frame(1, 2, 3, 4)
    frame["at"] = ["2026-11-04", "2026-11-01", "2026-11-03", "2026-11-02"]
    _put(tmp_path / "r.csv", frame)
    assert _read(tmp_path, path="r.csv", rows=2).frame["id"].tolist() == [3, 4]  # file order
    timed = _read(tmp_path, path="r.csv", rows=2, time_column="at")
    assert timed.frame["id"].tolist() == [3, 1] and timed.window == "last 2 rows"


def test_time_window_ends_now_or_at_the_newest_row(tmp_path) -> None:
    now = datetime.now(UTC)
    frame = _frame(1, 2, 3, 4)
    frame["at"] = [
        (now - d).isoformat()
        for d in (timedelta(hours=1), timedelta(days=10), timedelta(days=3), timedelta(days=8))
    ]
    _put(tmp_path / "t.csv", frame)
    got = _read(tmp_path, path="t.csv", time_column="at", last="7d")
    assert got.frame["id"].tolist() == [3, 1]  # sorted by time, older than 7 days dropped
    assert got.window.startswith("at >= ")
    old = _frame(1, 2, 3)
    old["at"] = ["2020-01-01T00:00:00", "2020-01-03T00:00:00", "2020-01-03T20:00:00"]
    _put(tmp_path / "old.parquet", old)
    newest = _read(tmp_path, path="old.parquet", time_column="at", last="12h", until="newest")
    assert newest.frame["id"].tolist() == [3]
    with pytest.raises(InvalidInput) as exc:
        _read(tmp_path, path="old.parquet", time_column="at", last="12h")  # ends now: nothing left
    assert "no rows with at in the 43200 s before" in _one_line(exc.value, "monitor.source.last")


@pytest.mark.parametrize(
    ("values", "why"),
    [(["yesterday-ish", "soon"], "not readable as timestamps"), ([1700000000, 1700000100], "holds numbers")],
)
def test_a_time_column_that_is_not_timestamps_is_refused(tmp_path, values, why) -> None:
    frame = _frame(1, 2)
    frame["at"] = values
    _put(tmp_path / "t.csv", frame)
    with pytest.raises(InvalidInput) as exc:
        _read(tmp_path, path="t.csv", time_column="at", last="1d")
    assert why in _one_line(exc.value, "monitor.source.time_column")
    with pytest.raises(InvalidInput) as exc:
        _read(tmp_path, path="t.csv", time_column="when", last="1d")
    assert "no column 'when'" in _one_line(exc.value, "monitor.source.time_column")


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "field", "says"),
    [
        ({"path": "x.csv", "colour": "red"}, "monitor.source.colour", "Extra inputs"),
        ({"path": "x.csv", "time_column": "at", "last": "7 weeks"}, "monitor.source.last", "not a duration"),
        ({"path": "x.csv", "time_column": "at", "last": "0d"}, "monitor.source.last", "greater than 0"),
        ({"path": "x.csv", "last": "7d"}, "monitor.source.last", "needs `time_column`"),
        ({"path": "x.csv", "rows": "100"}, "monitor.source.rows", "valid integer"),
        ({"path": "x.csv", "rows": True}, "monitor.source.rows", "valid integer"),
        ({"path": "x.csv", "rows": 2.5}, "monitor.source.rows", "valid integer"),
        ({"path": "x.csv", "pick": "latest"}, "monitor.source.pick", "'all' or 'newest'"),
        ({"path": "x.csv", "format": "xlsx"}, "monitor.source.format", "'csv' or 'parquet'"),
        ({"path": "s3://b/x.csv"}, "monitor.source.path", "at least 3 characters"),
        ({"path": "https://example.com/x.csv"}, "monitor.source.path", "only local paths"),
        ({"path": "x\u0000.csv"}, "monitor.source.path", "control character"),
        ({"rows": 5}, "monitor.source.path", "Field required"),
    ],
)
def test_a_bad_spec_is_one_line_naming_the_field(tmp_path, source, field, says) -> None:
    with pytest.raises(InvalidInput) as exc:
        PipelineConfig.load(_config(tmp_path, source))
    assert says in _one_line(exc.value, field)


def test_no_match_an_unreadable_file_and_no_rows_are_refused(tmp_path) -> None:
    with pytest.raises(InvalidInput) as exc:
        _read(tmp_path, path="recent/*.csv")
    assert str(exc.value) == f"monitor.source.path: no file matches file://{tmp_path}/recent/*.csv"
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InvalidInput) as exc:
        _read(tmp_path, path="bad.parquet")
    assert "cannot read" in _one_line(exc.value, "monitor.source.path") and "as parquet" in str(exc.value)
    (tmp_path / "empty.csv").write_text("id,x\n")
    with pytest.raises(InvalidInput) as exc:
        _read(tmp_path, path="empty.csv")
    assert "holds no rows" in _one_line(exc.value, "monitor.source.path")


def test_neither_a_data_path_nor_a_source_is_refused(tmp_path) -> None:
    config = PipelineConfig.parse({**BASE, "base_dir": str(tmp_path)})
    with pytest.raises(InvalidInput) as exc:
        read_slice(config)
    assert "give a data path or set monitor.source" in _one_line(exc.value, "monitor.source")


def test_an_explicit_path_names_data_path_in_refusals(tmp_path) -> None:
    _put(tmp_path / "one.csv", _frame(4))
    frame, uri = read_path(str(tmp_path / "one.csv"))
    assert frame["id"].tolist() == [4] and uri == f"file://{tmp_path}/one.csv"
    with pytest.raises(InvalidInput) as exc:
        read_path("missing.csv", str(tmp_path))
    assert "no file matches" in _one_line(exc.value, "data_path")


# --- S3 (moto server on loopback) ------------------------------------------------------------


def _s3_put(client, key: str, frame: pd.DataFrame | bytes) -> None:
    if isinstance(frame, bytes):
        body = frame
    elif key.endswith(".parquet"):
        body = frame.to_parquet(index=False)
    else:
        body = frame.to_csv(index=False).encode()
    client.put_object(Bucket=BUCKET, Key=key, Body=body)


def test_s3_glob_csv_and_newest_parquet_partition(s3_env, s3_client, tmp_path) -> None:
    p = f"src-{uuid.uuid4().hex[:8]}"
    _s3_put(s3_client, f"{p}/csv/b.csv", _frame(2))
    _s3_put(s3_client, f"{p}/csv/a.csv", _frame(1))
    _s3_put(s3_client, f"{p}/csv/a.json", b"{}")
    got = _read(tmp_path, path=f"s3://{BUCKET}/{p}/csv/*.csv")
    assert got.frame["id"].tolist() == [1, 2]
    assert got.uri == f"s3://{BUCKET}/{p}/csv/*.csv"
    assert got.files == (f"s3://{BUCKET}/{p}/csv/a.csv", f"s3://{BUCKET}/{p}/csv/b.csv")
    _s3_put(s3_client, f"{p}/events/dt=2026-11-28/part-0.parquet", _frame(1))
    _s3_put(s3_client, f"{p}/events/dt=2026-11-29/part-0.parquet", _frame(2, 3))
    _s3_put(s3_client, f"{p}/events/dt=2026-11-29/part-1.parquet", _frame(4))
    _s3_put(s3_client, f"{p}/events/dt=2026-11-29/_SUCCESS", b"")
    newest = _read(tmp_path, path=f"s3://{BUCKET}/{p}/events/", pick="newest", rows=2)
    assert newest.frame["id"].tolist() == [3, 4]
    assert newest.uri == f"s3://{BUCKET}/{p}/events/dt=2026-11-29/"
    single = _read(tmp_path, path=f"s3://{BUCKET}/{p}/events/dt=2026-11-28/part-0.parquet")
    assert single.frame["id"].tolist() == [1]


def test_s3_refusals_name_the_field(s3_env, s3_client, tmp_path) -> None:
    p = f"bad-{uuid.uuid4().hex[:8]}"
    with pytest.raises(InvalidInput) as exc:
        _read(tmp_path, path=f"s3://{BUCKET}/{p}/x/*.csv")
    assert str(exc.value) == f"monitor.source.path: no file matches s3://{BUCKET}/{p}/x/*.csv"
    _s3_put(s3_client, f"{p}/broken.parquet", b"not parquet at all")
    with pytest.raises(InvalidInput) as exc:
        _read(tmp_path, path=f"s3://{BUCKET}/{p}/broken.parquet")
    text = _one_line(exc.value, "monitor.source.path")
    assert f"cannot read s3://{BUCKET}/{p}/broken.parquet as parquet" in text
    with pytest.raises(InvalidInput) as exc:
        _read(tmp_path, path="s3://no-such-bucket-here/x.csv")
    assert "bucket no-such-bucket-here does not exist" in _one_line(exc.value, "monitor.source.path")


# --- example data on first use ---------------------------------------------------------------


def test_example_data_is_written_on_first_use_and_left_alone_after(tmp_path, caplog) -> None:
    text = EXAMPLE.read_text()
    assert "python -m flows.demo_data" not in text and "example: credit-risk" in text
    shutil.copy(EXAMPLE, tmp_path / "credit-risk.yaml")
    config = PipelineConfig.load(tmp_path / "credit-risk.yaml")
    data = tmp_path / "data"
    with caplog.at_level("INFO", logger="govflow.data"):
        first = load(config)
    notes = [r.getMessage() for r in caplog.records if "data.example" in r.getMessage()]
    assert notes == [f"data.example credit-risk: wrote 6 missing data files under {data}"]
    assert len(first.train) == 4000 and {"sex", "default"} <= set(first.train.columns)
    days = sorted(p.name for p in (data / "recent").iterdir())
    assert len(days) == 3 and days[-1] == f"{datetime.now(UTC).date().isoformat()}.csv"
    frame, uri = read_recent(config)
    assert uri == f"file://{data}/recent/{days[-1]}" and len(frame) == 1000
    # Present files are never overwritten: a hand-made training file survives, a deleted one returns.
    mine = _frame(1, 2)
    _put(data / "base_train.csv", mine)
    before = (data / "base_train.csv").read_bytes()
    (data / "base_eval.csv").unlink()
    caplog.clear()
    with caplog.at_level("INFO", logger="govflow.data"):
        assert ensure_example(config) == [data / "base_eval.csv"]
        assert ensure_example(config) == []
    assert (data / "base_train.csv").read_bytes() == before
    assert sum("data.example" in r.getMessage() for r in caplog.records) == 1


def test_the_example_window_over_its_recent_days(tmp_path) -> None:
    shutil.copy(EXAMPLE, tmp_path / "credit-risk.yaml")
    ensure_example(PipelineConfig.load(tmp_path / "credit-risk.yaml"))
    src = {"path": "data/recent/*.csv", "time_column": "applied_at", "last": "1d", "until": "newest"}
    config = PipelineConfig.parse(
        {**yaml.safe_load(EXAMPLE.read_text()), "monitor": {"source": src}, "base_dir": str(tmp_path)}
    )
    frame, _ = read_recent(config)
    stamps = pd.to_datetime(frame["applied_at"], utc=True)
    assert stamps.is_monotonic_increasing and stamps.max() - stamps.min() <= timedelta(days=1)
    assert 1000 < len(frame) < 3000  # parts of two days, not all three


def test_generated_example_data_is_git_ignored() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git work tree")
    out = subprocess.run(
        ["git", "check-ignore", "-q", "flows/examples/data/base_train.csv"], cwd=ROOT, capture_output=True
    )
    assert out.returncode == 0
