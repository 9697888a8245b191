"""Hostile /predict bodies get a 422 naming the field, never a 500: numbers beyond the column's
dtype, non-finite literals, deep nesting, bodies that are not JSON or not records."""

from __future__ import annotations

import json
import select
import socket

import httpx
import pytest

from deployments.payload import InputValidator
from registry import ColumnSpec
from registry.errors import InvalidInput
from tests.deployments.support import probe_records, promote, register

GOOD = {"age": 30, "income": 51.5, "plan": "pro", "active": True}


def _record(**values: str) -> bytes:
    """One record as raw JSON, with some values given as literal JSON text."""
    fields = {k: v for k, v in {"age": "30", "income": "51.5", "plan": '"pro"', "active": "true"}.items()}
    fields.update(values)
    return ("{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}").encode()


@pytest.fixture(scope="module")
def served(tmp_path_factory, estimators):
    """One server for the module: the trained pipeline in production, no registry polling."""
    from deployments.server import ServerThread
    from deployments.serving import create_app
    from registry import Policy, Registry

    home = tmp_path_factory.mktemp("limits")
    reg = Registry(url=f"sqlite:///{home / 'registry.db'}", artifact_root=str(home / "art"), policy=Policy())
    promote(reg, register(reg, estimators[0]))
    srv = ServerThread(create_app(reg, "churn", poll=0)).start()
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        yield client
    srv.stop()
    reg.close()


def _refused(client: httpx.Client, body: bytes) -> dict:
    r = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, (r.status_code, r.text[:300])
    assert r.headers["content-type"] == "application/json"
    return r.json()


@pytest.mark.parametrize(
    ("values", "column"),
    [
        ({"age": "1" + "0" * 400}, "age"),
        ({"age": "-" + "9" * 30}, "age"),
        ({"age": "9223372036854775808"}, "age"),
        ({"age": "1e300"}, "age"),
        ({"income": "1" + "0" * 400}, "income"),
        ({"income": "1e400"}, "income"),
        ({"income": "-1e400"}, "income"),
    ],
    ids=["int-10e400", "int-negative-huge", "int-2e63", "int-from-huge-float", "float-10e400", "inf", "-inf"],
)
def test_numbers_beyond_the_dtype_are_422_naming_the_column(served, values, column) -> None:
    body = _refused(served, b'{"records":[' + _record() + b"," + _record(**values) + b"]}")
    assert body["field"] == "records" and column in body["detail"]
    (problem,) = body["problems"]
    assert problem["column"] == column and problem["problem"] == "range" and problem["rows"] == [1]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("column", ["age", "income", "plan"])
def test_non_finite_literals_are_422_naming_the_column(served, literal, column) -> None:
    body = _refused(served, b"[" + _record(**{column: literal}) + b"]")
    (problem,) = body["problems"]
    assert problem["column"] == column and problem["problem"] == "type" and problem["got"] == [literal]
    assert column in body["detail"]


def test_non_finite_literal_outside_records_is_422(served) -> None:
    assert _refused(served, b'{"records": NaN}')["field"] == "records"


@pytest.mark.parametrize("depth", [100_000, 5_000, 990])
@pytest.mark.parametrize(("open_", "close"), [(b"[", b"]"), (b'{"a":', b"}")], ids=["lists", "objects"])
def test_deep_nesting_is_422(served, depth, open_, close) -> None:
    body = _refused(served, open_ * depth + b"1" + close * depth)
    assert body["field"] in ("body", "records")


def test_deep_nesting_inside_a_record_names_the_column(served) -> None:
    nested = b"[" * 50_000 + b"]" * 50_000
    body = _refused(served, b'{"records":[' + _record(plan=nested.decode()) + b"]}")
    assert body["field"] in ("body", "records")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff\xfe not utf-8",
        b"caf\xe9",
        b'{"records": [',
        b"null",
        b"42",
        b'"records"',
        b"[[1, 2]]",
        b'{"records": {"age": 1}}',
        b'{"records": [[]]}',
        b'{"rows": []}',
        b'{"records": []}',
        b'{"records": [{"age": {"x": 1}, "income": [1], "plan": null, "active": "yes"}]}',
    ],
)
def test_wrong_bodies_are_422_not_500(served, raw) -> None:
    body = _refused(served, raw)
    assert body["detail"] and body["field"] in ("body", "records")


def test_good_records_still_predict(served) -> None:
    r = served.post("/predict", json={"records": probe_records(3)})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 3
    # An integral float and the int64 bounds themselves are accepted.
    r = served.post(
        "/predict", json=[{**GOOD, "age": 41.0}, {**GOOD, "age": 2**63 - 1}, {**GOOD, "age": -(2**63)}]
    )
    assert r.status_code == 200 and len(r.json()["predictions"]) == 3
    # The largest finite float passes the payload check; the model may still refuse it, as a 422.
    r = served.post("/predict", json=[{**GOOD, "income": 1.7e308}])
    assert r.status_code in (200, 422), r.text


@pytest.mark.parametrize(
    ("dtype", "ok", "bad"),
    [
        ("uint8", [0, 255], [256, -1]),
        ("Int64", [None, 2**63 - 1], [2**63, 1e300]),
        ("float32", [3.0e38, -3.0e38], [1e39, 10**400]),
        ("float64", [1.7e308, None], [10**400, float("inf")]),
        ("Float32", [None, -3.0e38], [-1e39, float("-inf")]),
    ],
)
def test_range_of_each_dtype(dtype, ok, bad) -> None:
    validator = InputValidator([ColumnSpec(name="x", dtype=dtype)])
    assert len(validator.to_frame([{"x": v} for v in ok])) == len(ok)
    with pytest.raises(InvalidInput) as info:
        validator.to_frame([{"x": v} for v in ok + bad])
    (problem,) = info.value.fields["problems"]
    assert problem.problem == "range" and problem.rows == [len(ok), len(ok) + 1]


@pytest.mark.parametrize("length", ["9" * 5000, "²", "-1", "1e3"])
def test_odd_content_length_is_a_client_error(served, length) -> None:
    host, port = served.base_url.host, served.base_url.port
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(
            f"POST /predict HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
            f"content-length: {length}\r\nconnection: close\r\n\r\n[]".encode()
        )
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status = int(reply.split(b" ", 2)[1])
    assert 400 <= status < 500, reply[:200]


def test_oversized_body_names_the_field(tmp_path, estimators) -> None:
    from deployments.server import ServerThread
    from deployments.serving import create_app
    from registry import Policy, Registry

    reg = Registry(url=f"sqlite:///{tmp_path / 'r.db'}", artifact_root=str(tmp_path / "art"), policy=Policy())
    promote(reg, register(reg, estimators[0]))
    with ServerThread(create_app(reg, "churn", poll=0, max_body_bytes=100)) as srv:
        r = httpx.post(f"{srv.url}/predict", json={"records": [GOOD] * 5}, timeout=10)
    reg.close()
    assert r.status_code == 413 and r.json()["field"] == "body" and "100 bytes" in r.json()["detail"]


BIG = 20 * 1024 * 1024
PIECE = b" " * 65536


def _head(host: str, framing: str, *extra: str) -> bytes:
    length = "transfer-encoding: chunked" if framing == "chunked" else f"content-length: {BIG}"
    lines = ["POST /predict HTTP/1.1", f"host: {host}", "content-type: application/json", length, *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _frame(piece: bytes, framing: str) -> bytes:
    return b"%x\r\n%s\r\n" % (len(piece), piece) if framing == "chunked" else piece


def _reply(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    raw = b""
    while chunk := sock.recv(65536):
        raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    return int(status_line.split(" ", 2)[1]), headers, body


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_a_20_mb_body_sent_whole_gets_the_413_not_a_reset(served, framing: str) -> None:
    """A client that sends all of its body before reading (urllib does, with connection: close)."""
    host, port = served.base_url.host, served.base_url.port
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(_head(host, framing, "connection: close"))
        try:
            for i in range(BIG // len(PIECE)):
                sock.sendall(_frame(PIECE, framing))
                if i == 17 * 16:  # 17 MiB, past the limit: an early answer (and close) has time to land
                    select.select([sock], [], [], 1.0)
            sock.sendall(b"0\r\n\r\n" if framing == "chunked" else b"")
        except OSError as exc:
            pytest.fail(f"the server cut the connection while the body was being sent: {exc!r}")
        status, headers, body = _reply(sock)
    assert status == 413 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"detail": "body: larger than 16777216 bytes", "field": "body", "problems": []}


def test_a_body_beyond_what_is_drained_is_not_read_forever(tmp_path, estimators) -> None:
    from deployments.server import ServerThread
    from deployments.serving import create_app
    from registry import Policy, Registry

    reg = Registry(url=f"sqlite:///{tmp_path / 'r.db'}", artifact_root=str(tmp_path / "art"), policy=Policy())
    promote(reg, register(reg, estimators[0]))
    app = create_app(reg, "churn", poll=0, max_body_bytes=1000, drain_bytes=100_000)
    sent = 0
    with ServerThread(app) as srv, socket.create_connection((srv.host, srv.port), timeout=30) as sock:
        sock.sendall(_head(srv.host, "chunked"))
        try:
            while sent < 256 * 1024 * 1024:
                sock.sendall(_frame(PIECE, "chunked"))
                sent += len(PIECE)
        except OSError:
            pass  # the server stopped reading and closed: what this test wants
    reg.close()
    assert sent < 256 * 1024 * 1024, "the server kept reading an endless body"


def test_a_client_waiting_for_100_continue_gets_the_413_at_once(served) -> None:
    host, port = served.base_url.host, served.base_url.port
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(_head(host, "content-length", "expect: 100-continue"))
        status, headers, body = _reply(sock)  # the server closes: it will not read a body it refuses
    assert status == 413 and headers["connection"] == "close" and json.loads(body)["field"] == "body"
