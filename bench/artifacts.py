"""Benchmark the artifact stores against raw hashlib sha256 over the same file, in one run.

- anchor: ``hashlib.file_digest(f, "sha256")`` over the file (what any verified copy must pay);
- the disk's ceiling: ``shutil.copyfile`` + fsync with no hashing (a durable put cannot beat it);
- local put (a new blob: copy + hash + fsync + rename) and local get (copy + verify);
- S3 put and get through moto's server on loopback (a figure set by moto, a pure-Python
  server, not by S3).

Each measurement runs in its own subprocess, so its peak RSS is its own (read as VmHWM: Linux
carries ru_maxrss of the forked parent across exec). The file is in the page cache for every
measurement, ``os.sync()`` runs before each one so earlier writeback does not land on it, local
operations are interleaved round by round, and memory is recycled before each (see
``_recycle_memory``). ``python -m bench.artifacts`` prints a Markdown section;
``run(quick=True)`` uses 50 MiB instead of 1 GiB.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[1]
BUCKET = "govflow-bench"

# One measurement, in a fresh interpreter. Prints JSON: seconds, baseline and peak RSS (bytes).
_CHILD = textwrap.dedent(
    """
    import hashlib, json, os, sys, time
    from pathlib import Path

    def hwm():
        # VmHWM is this process's own peak RSS; ru_maxrss would start at the parent's peak
        # (Linux carries the forked copy's high-water mark across exec).
        with open("/proc/self/status") as fh:
            return int(next(x for x in fh if x.startswith("VmHWM:")).split()[1]) * 1024

    op, src, root, arg = sys.argv[1:5]
    src = Path(src)
    if op == "hashlib":
        def work():
            with open(src, "rb") as fh:
                return hashlib.file_digest(fh, "sha256").hexdigest()
    elif op == "copy":  # the disk's ceiling for a durable copy: no hashing at all
        import shutil
        out = Path(root) / "raw-copy.bin"
        def work():
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out)
            fd = os.open(out, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
            return None
    else:
        from registry.artifacts import open_store
        store = open_store(root)
        warm = Path(arg).parent / "warm.bin"
        warm.write_bytes(b"warm-up")  # import the lazy modules before the baseline
        store.get(store.put(warm).sha256, Path(arg).parent / "warm.out")
        if op == "put":
            def work():
                return store.put(src).sha256
        else:
            def work():
                return store.get(src.name, Path(arg)).sha256
    base = hwm()
    t0 = time.perf_counter()
    digest = work()
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "base": base, "peak": hwm(), "sha256": digest}))
    """
)


def _measure(op: str, src: Path, root: str, arg: str, env: dict[str, str]) -> dict[str, Any]:
    os.sync()
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, op, str(src), root, arg],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{op} on {root} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _write_random(path: Path, size: int) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        left = size
        while left:
            chunk = os.urandom(min(8 * MiB, left))
            digest.update(chunk)
            fh.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def _start_s3() -> tuple[Any, dict[str, str]]:
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "GOVFLOW_S3_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        # moto copies a large object in Python; on shared cores that can outlast the 5 s default.
        "GOVFLOW_S3_READ_TIMEOUT": "120",
    }
    boto3.session.Session().client(
        "s3",
        endpoint_url=env["GOVFLOW_S3_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    ).create_bucket(Bucket=BUCKET)
    return server, env


def _summary(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Median time; peak RSS and its growth are the worst run's."""
    return {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "fastest": min(r["seconds"] for r in runs),
        "slowest": max(r["seconds"] for r in runs),
        "peak": max(r["peak"] for r in runs),
        "grew": max(r["peak"] - r["base"] for r in runs),
    }


def _checked(label: str, m: dict[str, Any], digest: str) -> dict[str, Any]:
    if m["sha256"] not in (digest, None):
        raise RuntimeError(f"{label}: digest {m['sha256']} is not {digest}")
    return m


def _recycle_memory(work: Path, size: int) -> None:
    """Write and delete 1.5x ``size`` of page cache before a measurement.

    On this kind of VM the first touch of a memory page is slow (the host backs it lazily): a
    plain kernel file copy ran at ~0.4 GB/s into fresh pages and ~3 GB/s into recycled ones.
    Page cache is memory, so without this each writer's speed depends on what the previous
    measurement freed. With it, every measurement writes into recycled pages, as on a machine
    that has been up for a while.
    """
    ballast = work / "ballast.bin"
    block = bytes(8 * MiB)
    with open(ballast, "wb") as fh:
        for _ in range(3 * size // (2 * len(block)) + 1):
            fh.write(block)
    ballast.unlink()


def _local_rounds(src: Path, digest: str, work: Path, env: dict[str, str], repeats: int) -> dict[str, Any]:
    """hashlib, raw copy, put, get: interleaved round by round, every output deleted after use.

    Interleaving gives each operation the same drift of a VM's disk; deleting outputs and
    recycling memory before each run gives each writer the same kind of memory to write into.
    """
    labels = {
        "hashlib": "hashlib sha256 (anchor)",
        "copy": "raw copy + fsync, no hash (disk ceiling)",
        "put": "local put (new blob, fsynced)",
        "get": "local get (verified)",
    }
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in labels.values()}
    blob = work / digest  # get's argument: the child takes the digest from the file name
    for i in range(repeats):
        here = work / f"round-{i}"
        store, out = here / "store", here / "out" / "model.bin"
        out.parent.mkdir(parents=True)
        for op, source, root in (
            ("hashlib", src, "-"),
            ("copy", src, str(here / "raw")),
            ("put", src, str(store)),
            ("get", blob, str(store)),
        ):
            _recycle_memory(work, src.stat().st_size)
            runs[labels[op]].append(_checked(labels[op], _measure(op, source, root, str(out), env), digest))
            shutil.rmtree(here / "raw", ignore_errors=True)
        shutil.rmtree(here, ignore_errors=True)
    return {label: _summary(r) for label, r in runs.items()}


def _s3_rounds(src: Path, digest: str, work: Path, env: dict[str, str], repeats: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"S3 put (moto, loopback)": [], "S3 get (moto, loopback)": []}
    for i in range(repeats):
        root = f"s3://{BUCKET}/run-{uuid.uuid4().hex[:8]}"
        out = work / f"s3-{i}" / "model.bin"
        out.parent.mkdir(parents=True)
        for label, op, source in (
            ("S3 put (moto, loopback)", "put", src),
            ("S3 get (moto, loopback)", "get", work / digest),
        ):
            _recycle_memory(work, src.stat().st_size)
            runs[label].append(_checked(label, _measure(op, source, root, str(out), env), digest))
        shutil.rmtree(out.parent, ignore_errors=True)
    return {label: _summary(r) for label, r in runs.items()}


def run(quick: bool = False) -> str:
    """Measure hashlib, local put/get and S3 put/get on one file; return a Markdown section."""
    size = 50 * MiB if quick else 1024 * MiB
    repeats = 3 if quick else 5
    work = Path(tempfile.mkdtemp(prefix="govflow-bench-"))
    server = None
    try:
        src = work / "artifact.bin"
        digest = _write_random(src, size)
        server, s3_env = _start_s3()
        env = {**os.environ, **s3_env, "PYTHONPATH": str(ROOT)}
        results = _local_rounds(src, digest, work, env, repeats)
        results.update(_s3_rounds(src, digest, work, env, repeats if quick else 1))
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return _report(results, size, quick, repeats)


def _report(results: dict[str, dict[str, float]], size: int, quick: bool, repeats: int) -> str:
    import boto3
    import moto

    anchor = size / MiB / results["hashlib sha256 (anchor)"]["seconds"]
    rows = []
    for name, r in results.items():
        mbps, low, high = (size / MiB / r[k] for k in ("seconds", "slowest", "fastest"))
        peak, grew = r["peak"] / MiB, r["grew"] / MiB
        rows.append(
            f"| {name} | {mbps:,.0f} | {low:,.0f}–{high:,.0f} | {mbps / anchor:.0%} | {peak:,.0f} | {grew:,.0f} |"
        )
    return "\n".join(
        [
            "## Artifact stores (`bench/artifacts.py`)",
            "",
            f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; machine: {os.cpu_count()} cores, "
            f"{platform.machine()}, Python {platform.python_version()}, boto3 {boto3.__version__}, "
            f"moto {moto.__version__}",
            f"- file: {size // MiB:,} MiB of random bytes{' (quick smoke run)' if quick else ''}, in the "
            f"page cache; each figure is one subprocess, median of {repeats} runs "
            f"({'the same' if quick else '1 run'} for S3)",
            "- ratio: throughput / hashlib sha256 throughput on the same file in the same run; "
            "target ≥ 70% for local put and get",
            "- peak RSS: the subprocess's VmHWM; growth: that peak minus the peak after a warm-up "
            "put and get of a 7-byte file, i.e. the memory the artifact's size costs (flat = 0)",
            "- command: `python -m bench.artifacts`",
            "",
            "| operation | MiB/s (median) | min–max | ratio vs hashlib | peak RSS MiB | RSS growth MiB |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
    )


if __name__ == "__main__":
    print(run())
