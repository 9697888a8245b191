"""Load run: 16 concurrent clients against one ``govflow server`` on PostgreSQL.

Each client is a thread with its own RemoteRegistry per role (its own HTTP connection pool) and
draws its next operation at random: 70% resolve ``@production``, 20% register a fresh small
artifact, 10% promote-or-rollback. Registers all go to one shared model, so version numbering is
contended. Each client also owns a model whose production version it keeps alternating: promote
a new version (register, stage, approve by the approver principal, promote by the operator),
then roll back to the previous one, and so on; every write queues on the one audit chain.
Afterwards the audit chain is verified. ``GOVFLOW_LOAD_SECONDS`` sets the duration (default 60).
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import threading
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.harness import percentile, pg_database, pg_reachable, start_govflow

CLIENTS = 16
SHARED = "load"
SMALL = 4096


class Client(threading.Thread):
    """One load client: a RemoteRegistry per role and its own model."""

    def __init__(self, index: int, url: str, tokens: dict[str, str], folder: Path, until: float) -> None:
        super().__init__(name=f"load-{index}", daemon=True)
        from registry import Registry

        self.regs = {
            role: Registry(url, token=tokens[role]) for role in ("pipeline", "approver", "operator", "reader")
        }
        self.model = f"load-{index}"
        self.folder, self.until = folder, until
        self.rng = random.Random(index)
        self.times: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []
        self.rollback_next = False
        self.count = 0

    def artifact(self) -> Path:
        self.count += 1
        path = self.folder / f"{self.name}-{self.count}.bin"
        path.write_bytes(os.urandom(SMALL))
        return path

    def timed(self, op: str, fn: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
            self.errors.append(f"{op}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            return None
        finally:
            self.times[op].append((time.perf_counter() - t) * 1000)

    def promote_new(self) -> bool:
        """Register, stage, approve and promote a new version of this client's model."""
        pipe, m = self.regs["pipeline"], self.model
        made = self.timed("register", lambda: pipe.register(m, self.artifact()))
        if made is None:
            return False
        v = made.version
        steps = [
            ("stage", lambda: pipe.transition(m, v, "staging")),
            ("approve", lambda: self.regs["approver"].approve(m, v, reason="load")),
            ("promote", lambda: self.regs["operator"].transition(m, v, "production")),
        ]
        return all(self.timed(op, fn) is not None for op, fn in steps)

    def seed(self) -> None:
        """The first production version of this client's model (not timed)."""
        if not self.promote_new():
            raise RuntimeError(f"{self.name}: seeding failed: {self.errors}")
        self.times.clear()

    def run(self) -> None:
        while time.monotonic() < self.until:
            r = self.rng.random()
            if r < 0.7:
                target = f"load-{self.rng.randrange(CLIENTS)}@production"
                self.timed("resolve", lambda t=target: self.regs["reader"].resolve(t))
            elif r < 0.9:
                path = self.artifact()
                self.timed("register", lambda p=path: self.regs["pipeline"].register(SHARED, p))
                path.unlink()
            elif self.rollback_next:
                ops = self.regs["operator"]
                self.timed("rollback", lambda r=ops: r.rollback(self.model, reason="load: alternate"))
                self.rollback_next = False
            else:
                self.rollback_next = self.promote_new()

    def close(self) -> None:
        for reg in self.regs.values():
            reg.close()


def run_load(seconds: float) -> dict[str, Any]:
    """One server on a fresh PostgreSQL database, 16 clients for ``seconds``; the figures."""
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack, pg_database("load") as db:
        root = Path(tmp)
        url, tokens = start_govflow(f"postgresql+psycopg://{db}", root / "art", root, stack)
        clients = [Client(i, url, tokens, root, 0.0) for i in range(CLIENTS)]
        for c in clients:
            stack.callback(c.close)
            c.seed()
        start = time.monotonic()
        for c in clients:
            c.until = start + seconds
            c.start()
        for c in clients:
            c.join()
        elapsed = time.monotonic() - start
        from registry import Registry

        auditor = Registry(url, token=tokens["reader"])
        stack.callback(auditor.close)
        report = auditor.verify_audit()
        times: dict[str, list[float]] = defaultdict(list)
        for c in clients:
            for op, values in c.times.items():
                times[op].extend(values)
        errors = [e for c in clients for e in c.errors]
        shared = auditor.versions(SHARED, limit=1)
    return {
        "seconds": elapsed,
        "times": times,
        "errors": errors,
        "verify": report,
        "shared_versions": shared[0].version if shared else 0,
    }


def run(quick: bool = False) -> str:
    """Run the load; return the markdown section."""
    problem = pg_reachable()
    if problem:
        raise RuntimeError(f"PostgreSQL is unreachable: {problem}")
    seconds = float(os.environ.get("GOVFLOW_LOAD_SECONDS", "10" if quick else "60"))
    res = run_load(seconds)
    total = sum(len(v) for v in res["times"].values())
    verify = res["verify"]
    lines = [
        "## Load: 16 concurrent clients against one `govflow server` on PostgreSQL",
        "",
        f"Command: `make bench` (`python -m bench.load`; `GOVFLOW_LOAD_SECONDS` sets the duration). "
        f"{CLIENTS} client threads in one process, each with its own RemoteRegistry per role, for "
        f"{res['seconds']:.0f} s against one server process (one uvicorn worker) on a fresh PostgreSQL "
        "database, client and server sharing the machine's cores. Mix: 70% resolve @production, 20% "
        f"register a fresh {SMALL // 1024} KiB artifact (one shared model), 10% promote-or-rollback "
        "on the client's own model (promote = register, stage, approve by the approver, promote by the "
        "operator; the next time, roll back). Every call counts toward throughput.",
        "",
        f"Throughput: **{total / res['seconds']:.0f} calls/s** ({total:,} calls). Errors: "
        f"**{len(res['errors'])}**. Audit chain afterwards: "
        f"{'ok' if verify.ok else 'BROKEN at seq ' + str(verify.first_bad_seq)} ({verify.events:,} events); "
        f"the shared model reached version {res['shared_versions']:,}. Target (0 errors, a valid chain): "
        f"{'met' if verify.ok and not res['errors'] else '**not met**'}.",
        "",
        "| operation | calls | p50 ms | p99 ms |",
        "|---|---:|---:|---:|",
    ]
    for op in ("resolve", "register", "stage", "approve", "promote", "rollback"):
        values = res["times"].get(op, [])
        if values:
            lines.append(
                f"| {op} | {len(values):,} | {percentile(values, 0.5):.1f} | {percentile(values, 0.99):.1f} |"
            )
    if res["errors"]:
        lines += ["", "First errors:", ""] + [f"- `{e}`" for e in res["errors"][:5]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
