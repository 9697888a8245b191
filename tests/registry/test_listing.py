"""Listing at scale: pages, filters, page tokens and honest rows, on every backend."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from registry import CodeRef, DatasetRef, Lineage, Registry, RunRef
from registry.entities import ModelVersion
from registry.errors import InvalidInput, ModelNotFound

ROOT = Path(__file__).resolve().parents[2]


def _fill(reg: Any, artifact: Path, n: int, name: str = "churn") -> None:
    """``n`` versions; version i has auc 0.5 + i/100, team a (odd) or b (even), and tier i % 3."""
    for i in range(1, n + 1):
        reg.register(
            name,
            artifact,
            actor="bob",
            metrics={"auc": round(0.5 + i / 100, 2)},
            tags={"team": "a" if i % 2 else "b", "tier": str(i % 3)},
        )


def _walk(reg: Any, name: str, limit: int, **filters: Any) -> list[int]:
    seen, token = [], None
    for _ in range(1000):
        page = reg.versions(name, limit=limit, page_token=token, **filters)
        assert len(page) <= limit
        seen += [v.version for v in page]
        token = page.next_page_token
        if token is None:
            return seen
    raise AssertionError("the walk never ended")


def _refused(call: Any, field: str) -> str:
    with pytest.raises(InvalidInput) as caught:
        call()
    message = str(caught.value)
    assert caught.value.field == field and message.startswith(f"{field}: ") and "\n" not in message
    return message


# --- pages ----------------------------------------------------------------------------------


def test_pages_walk_every_version_once_newest_first(registry: Registry, artifact: Path) -> None:
    _fill(registry, artifact, 11)
    first = registry.versions("churn", limit=4)
    assert [v.version for v in first] == [11, 10, 9, 8] and first.next_page_token
    assert _walk(registry, "churn", 4) == list(range(11, 0, -1))
    assert _walk(registry, "churn", 11) == list(range(11, 0, -1))  # an exact fit ends without a token
    last = registry.versions("churn", limit=11)
    assert last.next_page_token is None
    everything = registry.versions("churn")
    assert [v.version for v in everything] == list(range(11, 0, -1)) and everything.next_page_token is None
    assert [v.version for v in registry.versions("churn", before=3)] == [2, 1]  # the old keyset still works


def test_pages_walk_every_version_once_under_concurrent_registrations(
    registry: Registry, artifact: Path, backend_url: str, tmp_path: Path
) -> None:
    _fill(registry, artifact, 12)
    # Another process keeps registering into the same database while we page.
    script = (
        "import sys\nfrom registry import Policy, Registry\n"
        "reg = Registry(url=sys.argv[1], artifact_root=sys.argv[2], policy=Policy())\n"
        "for i in range(40):\n    reg.register('churn', sys.argv[3], actor='writer')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVFLOW_")}
    writer = subprocess.Popen(
        [sys.executable, "-c", script, backend_url, str(tmp_path / "writer-art"), str(artifact)],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while registry.models()[0].latest_version == 12:
            assert writer.poll() is None and time.monotonic() < deadline, "the writer never registered"
            time.sleep(0.01)
        walks = [_walk(registry, "churn", 3)]
        while writer.poll() is None and time.monotonic() < deadline:
            walks.append(_walk(registry, "churn", 3))
        assert writer.wait(timeout=60) == 0, writer.stderr.read() if writer.stderr else ""
    finally:
        writer.kill()
        writer.wait()
    assert walks[0][0] < 52, "no walk overlapped the writer"
    for seen in walks:
        # Newer versions appear only above the first page; below it each version shows once.
        assert seen == list(range(seen[0], 0, -1)), seen
    assert _walk(registry, "churn", 7) == list(range(52, 0, -1))


def test_models_are_paged_by_name(registry: Registry, artifact: Path) -> None:
    for name in ("e", "a", "d", "c", "b"):
        registry.register(name, artifact, actor="bob")
    page = registry.models(limit=2)
    assert [m.name for m in page] == ["a", "b"]
    seen, token = [m.name for m in page], page.next_page_token
    while token:
        page = registry.models(limit=2, page_token=token)
        seen += [m.name for m in page]
        token = page.next_page_token
    assert seen == ["a", "b", "c", "d", "e"]
    assert [m.name for m in registry.models()] == seen


# --- filters --------------------------------------------------------------------------------


def test_each_filter_keeps_only_matching_versions(registry: Registry, artifact: Path) -> None:
    _fill(registry, artifact, 9)
    registry.transition("churn", 4, "staging", actor="bob")
    registry.transition("churn", 7, "staging", actor="bob")
    registry.set_alias("churn", "champion", 7, actor="bob")
    registry.register("other", artifact, actor="bob", tags={"team": "a"}, metrics={"auc": 0.99})

    def got(**filters: Any) -> list[int]:
        return [v.version for v in registry.versions("churn", **filters)]

    assert got(stage="staging") == [7, 4]
    assert got(stage="archived") == []
    assert got(alias="champion") == [7]
    assert got(alias="nobody") == []
    assert got(tags={"team": "a"}) == [9, 7, 5, 3, 1]
    assert got(tags=["team=b", "tier=1"]) == [4]
    assert got(tags={"team": "A"}) == []  # exact, case-sensitive
    assert got(metrics="auc>0.57") == [9, 8]
    assert got(metrics="auc>=0.57") == [9, 8, 7]
    assert got(metrics="auc<0.52") == [1]
    assert got(metrics="auc<=0.52") == [2, 1]
    assert got(metrics="auc=0.55") == [5]
    assert got(metrics=["auc>0.51", "auc<0.54"]) == [3, 2]
    assert got(metrics="loss<1") == []  # a metric the versions lack matches nothing
    assert got(stage="staging", tags={"team": "b"}, metrics="auc>0.5") == [4]
    assert _walk(registry, "churn", 2, tags={"team": "a"}) == [9, 7, 5, 3, 1]
    # Models: those with a version matching every filter.
    assert [m.name for m in registry.models(stage="staging")] == ["churn"]
    assert [m.name for m in registry.models(alias="champion")] == ["churn"]
    assert [m.name for m in registry.models(tags={"team": "a"})] == ["churn", "other"]
    assert [m.name for m in registry.models(metrics="auc>0.9")] == ["other"]
    assert [m.name for m in registry.models(stage="staging", metrics="auc>0.9")] == []


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"stage": "prod"}, "stage"),
        ({"stage": 3}, "stage"),
        ({"alias": "Bad Alias"}, "alias"),
        ({"tags": ["team"]}, "tag"),
        ({"tags": ['te"am=a']}, "tag"),
        ({"tags": {"team": 3}}, "tag"),
        ({"tags": 5}, "tag"),
        ({"metrics": "auc>>0.8"}, "metric"),
        ({"metrics": "auc~0.8"}, "metric"),
        ({"metrics": "auc>=high"}, "metric"),
        ({"metrics": "auc>=nan"}, "metric"),
        ({"metrics": "auc>=inf"}, "metric"),
        ({"metrics": ">=0.8"}, "metric"),
        ({"metrics": 0.8}, "metric"),
    ],
)
def test_bad_filters_are_refused_naming_them(
    registry: Registry, artifact: Path, filters: dict[str, Any], field: str
) -> None:
    registry.register("churn", artifact, actor="bob")
    _refused(lambda: registry.versions("churn", **filters), field)
    _refused(lambda: registry.models(**filters), field)


# --- limits and tokens ----------------------------------------------------------------------


@pytest.mark.parametrize("limit", ["5", 0, -1, 10_001, True, 2.0, [5]])
def test_bad_limits_are_refused(registry: Registry, artifact: Path, limit: Any) -> None:
    registry.register("churn", artifact, actor="bob")
    _refused(lambda: registry.versions("churn", limit=limit), "limit")
    _refused(lambda: registry.models(limit=limit), "limit")
    assert len(registry.versions("churn", limit=10_000)) == 1


def _tamper(token: str) -> str:
    body, check = token.split(".")
    doc = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    doc[1] = doc[1] + 100 if isinstance(doc[1], int) else doc[1] + "z"
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=") + "." + check


def test_foreign_or_edited_page_tokens_are_refused(registry: Registry, artifact: Path) -> None:
    _fill(registry, artifact, 5)
    _fill(registry, artifact, 5, name="fraud")
    token = registry.versions("churn", limit=2).next_page_token
    assert token
    cases = {
        "made up": "not-a-token",
        "empty": "",
        "huge": "A" * 5000,
        "edited position": _tamper(token),
        "edited checksum": token[:-1] + ("0" if token[-1] != "0" else "1"),
        "truncated": token[:-3],
    }
    for label, bad in cases.items():
        message = _refused(lambda b=bad: registry.versions("churn", limit=2, page_token=b), "page_token")
        assert "issued" in message, label
    other = _refused(lambda: registry.versions("fraud", limit=2, page_token=token), "page_token")
    assert "'churn'" in other and "'fraud'" in other
    filtered = _refused(
        lambda: registry.versions("churn", limit=2, page_token=token, stage="staging"), "page_token"
    )
    assert "other filters" in filtered
    models_token = registry.models(limit=1).next_page_token
    assert models_token
    _refused(lambda: registry.versions("churn", page_token=models_token), "page_token")
    _refused(lambda: registry.models(page_token=token), "page_token")
    _refused(lambda: registry.versions("churn", page_token=token, before=3), "before")
    _refused(lambda: registry.versions("churn", page_token=12345), "page_token")  # type: ignore[arg-type]
    # The genuine token still works after all that.
    assert [v.version for v in registry.versions("churn", limit=2, page_token=token)] == [3, 2]


def test_unknown_model_is_not_found_and_an_empty_match_is_empty(registry: Registry, artifact: Path) -> None:
    registry.register("churn", artifact, actor="bob")
    with pytest.raises(ModelNotFound):
        registry.versions("nope", limit=5)
    assert registry.versions("churn", stage="production") == []
    assert registry.models(alias="nobody") == []


# --- honest rows ----------------------------------------------------------------------------


def test_approvals_and_evidence_are_absent_unless_asked(registry: Registry, artifact: Path) -> None:
    registry.register("churn", artifact, actor="bob")  # 1: nothing decided
    registry.register("churn", artifact, actor="bob")  # 2: evidence, a waiver and an approval
    registry.add_evidence("churn", 2, gate="fairness", passed=False, value=0.6, threshold=0.8, actor="bob")
    registry.transition("churn", 2, "staging", actor="bob")
    registry.waive("churn", 2, "fairness", reason="accepted", actor="carol")
    registry.approve("churn", 2, actor="carol")
    plain = registry.versions("churn")
    assert all(v.approvals is None and v.evidence is None and v.waivers is None for v in plain)
    assert not plain[0].decisions_loaded
    full = {v.version: v for v in registry.versions("churn", with_decisions=True)}
    one, two = registry.get_version("churn", 1), registry.get_version("churn", 2)
    assert full[2].decisions_loaded and len(two.approvals or []) == 1 and len(two.evidence or []) == 1
    assert (full[2].approvals, full[2].evidence, full[2].waivers) == (
        two.approvals,
        two.evidence,
        two.waivers,
    )
    assert (full[1].approvals, full[1].evidence, full[1].waivers) == ([], [], [])  # truly none
    assert one.approvals == [] and full[2].approvals[0].current  # type: ignore[index]
    # A page asked with decisions fills only its own rows.
    page = registry.versions("churn", limit=1, with_decisions=True)
    assert [v.version for v in page] == [2] and page[0].approvals == two.approvals


def test_a_listed_row_is_the_stored_version_minus_what_it_leaves_out(
    registry: Registry, artifact: Path
) -> None:
    lineage = Lineage(
        datasets=[DatasetRef(role="train", uri="s3://d/train.csv", sha256="a" * 64, rows=10)],
        code=CodeRef(repo="git@example:ml.git", commit="c0ffee1234", dirty=True),
        run=RunRef(flow_run_id="run-1", flow_name="retrain"),
    )
    registry.register(
        "churn",
        artifact,
        actor="bob",
        params={"depth": 4, "big": 2**62, "name": "x"},
        metrics={"auc": 0.9},
        tags={"team": "a"},
        lineage=lineage,
        input_schema=[{"name": "age", "dtype": "int64"}],
        description="first",
    )
    registry.set_alias("churn", "champion", 1, actor="bob")
    registry.set_alias("churn", "blue", 1, actor="bob")
    listed = registry.versions("churn")[0]
    assert ModelVersion.model_validate(listed.model_dump()) == listed  # every field is there
    left_out = {"approvals", "evidence", "waivers", "drift_reference"}
    stored = registry.get_version("churn", 1)
    assert listed.model_dump(exclude=left_out) == stored.model_dump(exclude=left_out)
    assert listed.aliases == ["blue", "champion"] and listed.params["big"] == 2**62


@pytest.mark.embedded_only("counts the SQL statements the embedded registry sends")
def test_a_filtered_page_is_two_queries(registry: Registry, artifact: Path) -> None:
    _fill(registry, artifact, 30)
    registry.set_alias("churn", "champion", 29, actor="bob")
    sent: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append(statement)

    # PostgreSQL reads go through a second, autocommit engine.
    engines = {id(e): e for e in (registry.db.engine, getattr(registry.db, "_reads", registry.db.engine))}
    for engine in engines.values():
        sa.event.listen(engine, "before_cursor_execute", count)
    try:
        page = registry.versions("churn", limit=5, tags={"team": "a"}, metrics="auc>0.6")
        assert [v.version for v in page] == [29, 27, 25, 23, 21] and page[0].aliases == ["champion"]
        assert len(sent) == 2, sent
        sent.clear()
        registry.versions("churn", limit=5, page_token=registry.versions("churn", limit=5).next_page_token)
        assert len(sent) == 4  # two per page
        sent.clear()
        assert len(registry.models(limit=10)) == 1 and len(sent) == 2
    finally:
        for engine in engines.values():
            sa.event.remove(engine, "before_cursor_execute", count)


def test_the_server_refuses_bad_listing_arguments_in_one_line(registry: Any, artifact: Path) -> None:
    if getattr(registry, "server", None) is None:
        pytest.skip("the HTTP route exists on the server backend only")
    registry.register("churn", artifact, actor="bob")
    headers = {"authorization": f"Bearer {registry.server.admin_token}"}
    for query, field in [
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
        ("limit=%D9%A1", "limit"),  # an Arabic-Indic digit is not a number here
        ("page_token=xyz", "page_token"),
        ("metric=auc%3E%3E1", "metric"),
        ("tag=novalue", "tag"),
        ("stage=prod", "stage"),
    ]:
        r = httpx.get(f"{registry.server.url}/api/v1/models/churn/versions?{query}", headers=headers)
        doc = r.json()
        assert r.status_code == 400 and doc["field"] == field and doc["detail"].startswith(f"{field}: "), doc
    r = httpx.get(f"{registry.server.url}/api/v1/models/churn/versions?limit=1", headers=headers)
    body = r.json()
    assert set(body) == {"versions", "next_page_token"} and body["versions"][0]["approvals"] is None


# --- the CLI --------------------------------------------------------------------------------


def _cli(url: str, tmp_path: Path, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVFLOW_")}
    env.update(GOVFLOW_REGISTRY_URL=url, GOVFLOW_ARTIFACT_ROOT=str(tmp_path / "artifacts"), COLUMNS="200")
    proc = subprocess.run(
        [sys.executable, "-m", "govflow", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == expect, (args, proc.stdout, proc.stderr)
    if expect == 2:
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    return proc


def test_cli_json_pages_and_filters(tmp_path: Path, artifact: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    reg = Registry(url=url, artifact_root=str(tmp_path / "artifacts"))
    try:
        _fill(reg, artifact, 5)
        reg.add_evidence("churn", 5, gate="accuracy", passed=True, actor="ci")
    finally:
        reg.close()
    out = json.loads(_cli(url, tmp_path, "versions", "churn", "--json", "--limit", "2").stdout)
    assert set(out) == {"versions", "next_page_token"} and [v["version"] for v in out["versions"]] == [5, 4]
    assert not {"approvals", "evidence", "waivers"} & set(out["versions"][0])  # not read: left out
    token = out["next_page_token"]
    nxt = json.loads(
        _cli(url, tmp_path, "versions", "churn", "--json", "--limit", "2", "--page-token", token).stdout
    )
    assert [v["version"] for v in nxt["versions"]] == [3, 2]
    full = json.loads(_cli(url, tmp_path, "versions", "churn", "--json", "--full", "--limit", "1").stdout)
    assert full["versions"][0]["evidence"][0]["gate"] == "accuracy" and full["versions"][0]["approvals"] == []
    picked = json.loads(
        _cli(url, tmp_path, "versions", "churn", "--json", "--tag", "team=a", "--metric", "auc>=0.53").stdout
    )
    assert [v["version"] for v in picked["versions"]] == [5, 3] and picked["next_page_token"] is None
    table = _cli(url, tmp_path, "versions", "churn", "--limit", "2").stdout
    assert f"--page-token {token}" in table
    models = json.loads(_cli(url, tmp_path, "models", "--json", "--limit", "1").stdout)
    assert [m["name"] for m in models["models"]] == ["churn"] and models["next_page_token"] is None
    for args, option in [
        (["--metric", "auc>>1"], "--metric"),
        (["--tag", "team"], "--tag"),
        (["--stage", "prod"], "--stage"),
        (["--limit", "0"], "--limit"),
        (["--limit", "10001"], "--limit"),
        (["--page-token", "forged"], "--page-token"),
    ]:
        line = _cli(url, tmp_path, "versions", "churn", *args, expect=2).stderr
        assert f"error: {option}: " in line, line
    assert "--limit" in _cli(url, tmp_path, "versions", "churn", "--limit", "abc", expect=2).stderr
    assert "--metric" in _cli(url, tmp_path, "models", "--metric", "auc", expect=2).stderr
