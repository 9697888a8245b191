"""Mutation score of the governance core (``make mutate``): mutmut 3 on a snapshot of the tree.

    python -m bench.mutate [FILE ...] [--ref REF | --worktree] [--max-children N] [--no-doc]

mutmut writes a ``mutants/`` copy beside the code and runs pytest there, so the run happens in a
snapshot (``git archive REF``, default HEAD; ``--worktree`` copies the working tree instead) and
the repository only receives docs/mutation.md. The files mutated and the tests run are the
``[tool.mutmut]`` section of pyproject.toml; FILE arguments narrow the files. Tests run on the
SQLite side of the backend matrix only (``-k "not postgres"``), which keeps a run within reach
of 2 cores. A score is killed / total, where a timeout counts as killed (the mutant was caught)
and a mutant no selected test reaches counts as not killed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "mutation.md"
TARGET = 0.90
CAUGHT = {"killed", "timeout", "caught by type check"}

# One-line breaks that once passed the suite: every mutant that edits such a line must be caught.
# (file, function, text of the original line the mutant changes)
REQUIRED = [
    ("registry/lifecycle.py", "counted_approvers", "same_person(actor, row.registered_by)"),
    ("registry/lifecycle.py", "counted_approvers", "seen.isdisjoint(person_keys(actor))"),
    ("registry/audit.py", "verify", "head.hash != prev"),
    ("registry/audit.py", "verify", "if prev_hash != prev"),
    ("registry/model_io.py", "load_model", "sha256_file(path)"),
    ("checks/drift.py", "_reaches", ">="),
    ("checks/drift.py", "_add_nan_signal", "abs(change)"),
    ("checks/drift.py", "drift_gate", 'verdict != "act"'),
    ("checks/drift.py", "drift_gate", "act: float = 0.25"),
]


@dataclass
class FileScore:
    path: str
    status: dict[str, str] = field(default_factory=dict)  # mutant name -> mutmut status
    diffs: dict[str, str] = field(default_factory=dict)

    def count(self, *statuses: str) -> int:
        return sum(1 for s in self.status.values() if s in statuses)

    @property
    def total(self) -> int:
        return len(self.status)

    @property
    def caught(self) -> int:
        return self.count(*CAUGHT)

    @property
    def missed(self) -> list[str]:
        return sorted((n for n, s in self.status.items() if s not in CAUGHT), key=_mutant_order)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mutmut"]
    files = args.files or conf["only_mutate"]
    unknown = [f for f in files if f not in conf["only_mutate"]]
    if unknown:
        print(f"files: {', '.join(unknown)} not in [tool.mutmut] only_mutate", file=sys.stderr)
        return 2
    work = Path(args.workdir)
    ref = "worktree" if args.worktree else _commit(args.ref)
    _snapshot(work, args.ref, args.worktree)
    _narrow(work / "pyproject.toml", files)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    log = work / "mutmut.log"
    print(f"mutate: {', '.join(files)} at {ref[:12]} in {work} (log {log})", file=sys.stderr, flush=True)
    # mutmut forks each mutant's test run from a process that already ran the suite; a BLAS or
    # OpenMP thread pool started there deadlocks in the child, which would read as a timeout.
    env = os.environ | {v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    with open(log, "w") as out:
        rc = subprocess.call(
            [sys.executable, "-m", "mutmut", "run", "--max-children", str(args.max_children)],
            cwd=work,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    elapsed = time.perf_counter() - t0
    scores = _collect(work, files)
    unchecked = sum(s.count("not checked") for s in scores)
    if rc != 0 or unchecked:
        print(
            f"mutmut exit {rc}, {unchecked} mutant(s) not checked; see {log}:\n{_tail(log)}", file=sys.stderr
        )
        if not any(s.total > s.count("not checked") for s in scores):
            return 1
    report = _report(scores, ref, started, elapsed, args.max_children, rc)
    print(report)
    if rc != 0 or unchecked:
        print("incomplete run: docs/mutation.md left unchanged", file=sys.stderr)
        return 1
    if not args.no_doc:
        _write_doc(scores, ref, started, elapsed, args.max_children)
        print(f"wrote {DOC.relative_to(ROOT)}", file=sys.stderr)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.mutate", description=__doc__.split("\n")[0])
    p.add_argument("files", nargs="*", help="files to mutate (default: [tool.mutmut] only_mutate)")
    p.add_argument("--ref", default="HEAD", help="commit to snapshot (default HEAD)")
    p.add_argument("--worktree", action="store_true", help="snapshot the working tree instead")
    p.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    p.add_argument("--workdir", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "govflow-mutate"))
    p.add_argument("--no-doc", action="store_true", help="print only; leave docs/mutation.md alone")
    return p.parse_args(argv)


# --- the snapshot ---------------------------------------------------------------------------


def _commit(ref: str) -> str:
    return subprocess.check_output(["git", "rev-parse", ref], cwd=ROOT, text=True).strip()


def _snapshot(work: Path, ref: str, worktree: bool) -> None:
    """A fresh copy of the tracked tree (at ``ref`` or as it is on disk) in ``work``."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    if worktree:
        names = subprocess.check_output(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, text=True
        ).split("\0")
        for name in filter(None, names):
            src = ROOT / name
            if src.is_file():
                (work / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, work / name)
        return
    blob = subprocess.check_output(["git", "archive", "--format=tar", ref], cwd=ROOT)
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(work, filter="data")


def _narrow(pyproject: Path, files: list[str]) -> None:
    """Point the snapshot's ``only_mutate`` at ``files``."""
    text = pyproject.read_text(encoding="utf-8")
    listed = "only_mutate = [\n" + "".join(f'    "{f}",\n' for f in files) + "]"
    text, n = re.subn(r"(?ms)^only_mutate = \[.*?^\]", lambda _: listed, text, count=1)
    if n != 1:
        raise SystemExit("pyproject.toml: [tool.mutmut] has no only_mutate list")
    pyproject.write_text(text, encoding="utf-8")


# --- results --------------------------------------------------------------------------------


def _collect(work: Path, files: list[str]) -> list[FileScore]:
    """Statuses from mutmut's .meta files, and the diff of every mutant not caught."""
    here = Path.cwd()
    os.chdir(work)  # mutmut reads its config and mutants/ relative to the current folder
    try:
        from mutmut.mutation.diff_apply import get_diff_for_mutant
        from mutmut.stats import status_by_exit_code

        scores = []
        for path in files:
            meta = Path("mutants") / f"{path}.meta"
            score = FileScore(path)
            if meta.exists():
                codes = json.loads(meta.read_text())["exit_code_by_key"]
                score.status = {k: status_by_exit_code[v] for k, v in codes.items()}
                for name in score.status:
                    if score.status[name] not in CAUGHT or _required_candidate(path, name):
                        score.diffs[name] = get_diff_for_mutant(name, path=path)
            scores.append(score)
        return scores
    finally:
        os.chdir(here)


def _function(mutant: str) -> str:
    """``registry.audit.x_verify__mutmut_3`` -> ``verify``; methods keep their class."""
    last = mutant.rpartition(".")[2]
    last = re.sub(r"__mutmut_\d+$", "", last)
    return last.removeprefix("x_").replace("xǁ", "").replace("ǁ", ".")


def _mutant_order(name: str) -> tuple[str, int]:
    num = re.search(r"__mutmut_(\d+)$", name)
    return (_function(name), int(num.group(1)) if num else 0)


def _required_candidate(path: str, mutant: str) -> bool:
    return any(path == f and _function(mutant).split(".")[-1] == fn for f, fn, _ in REQUIRED)


def _changed_lines(diff: str) -> tuple[list[str], list[str]]:
    body = [ln for ln in diff.splitlines() if not ln.startswith(("---", "+++", "@@"))]
    return (
        [ln[1:].strip() for ln in body if ln.startswith("-")],
        [ln[1:].strip() for ln in body if ln.startswith("+")],
    )


def _required(scores: list[FileScore]) -> list[tuple[str, str, str, list[tuple[str, str]]]]:
    """For each required break: the mutants that edit its line, with their status."""
    out = []
    for path, fn, text in REQUIRED:
        score = next((s for s in scores if s.path == path), None)
        if score is None:
            continue
        hits = [
            (name, score.status[name])
            for name, diff in score.diffs.items()
            if _function(name).split(".")[-1] == fn and any(text in ln for ln in _changed_lines(diff)[0])
        ]
        out.append((path, fn, text, hits))
    return out


def _summary(diff: str) -> str:
    removed, added = _changed_lines(diff)
    return f"`{' / '.join(removed)[:90]}` → `{' / '.join(added)[:90]}`"


def _rows(scores: list[FileScore]) -> list[str]:
    rows = []
    for s in scores:
        pct = f"{s.caught / s.total:.1%}" if s.total else "-"
        rows.append(
            f"| {s.path} | {s.count('killed')} | {s.count('timeout')} | {s.count('survived')} | "
            f"{s.count('no tests')} | {s.total - s.count(*CAUGHT, 'survived', 'no tests')} | "
            f"{s.caught}/{s.total} | {pct} |"
        )
    return rows


HEADER = [
    "| file | killed | timeout | survived | no tests | other | caught / total | score |",
    "|---|---:|---:|---:|---:|---:|---:|---:|",
]


def _report(
    scores: list[FileScore], ref: str, started: datetime, elapsed: float, children: int, rc: int
) -> str:
    caught = sum(s.caught for s in scores)
    total = sum(s.total for s in scores)
    lines = [
        f"mutation run {started:%Y-%m-%d %H:%M} UTC, {ref[:12]}, {elapsed:.0f} s, "
        f"{children} workers, mutmut exit {rc}",
        "",
        *HEADER,
        *_rows(scores),
        f"| **total** | | | | | | {caught}/{total} | {caught / total:.1%} |" if total else "| total | - |",
        "",
    ]
    for s in scores:
        if s.missed:
            lines.append(f"not caught in {s.path}:")
            lines += [f"- {n} ({s.status[n]}): {_summary(s.diffs.get(n, ''))}" for n in s.missed]
    lines.append("")
    for path, fn, text, hits in _required(scores):
        bad = [f"{n} ({st})" for n, st in hits if st not in CAUGHT]
        verdict = (
            f"{len(hits)} mutant(s), all caught"
            if hits and not bad
            else (f"NOT CAUGHT: {', '.join(bad)}" if bad else "no mutant edits this line")
        )
        lines.append(f"required {path}:{fn} `{text}`: {verdict}")
    return "\n".join(lines)


def _tail(log: Path, n: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-n:])


# --- docs/mutation.md -----------------------------------------------------------------------


def _write_doc(scores: list[FileScore], ref: str, started: datetime, elapsed: float, children: int) -> None:
    """Replace this run's files' sections in docs/mutation.md; other files keep their own run."""
    old = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    sections = dict(re.findall(r"(?s)<!-- mutate:(\S+) -->\n(.*?)<!-- /mutate -->\n", old))
    for s in scores:
        body = [
            f"### {s.path}",
            "",
            f"- run: {started:%Y-%m-%d %H:%M} UTC, commit `{ref[:12]}`, {children} workers, "
            f"whole run {elapsed:.0f} s (with the other files of that run)",
            "",
            *HEADER,
            *_rows([s]),
            "",
        ]
        if s.missed:
            body += ["Not caught:", ""]
            body += [f"- `{n}` ({s.status[n]}): {_summary(s.diffs.get(n, ''))}" for n in s.missed]
            body.append("")
        req = [r for r in _required([s])]
        if req:
            body += ["Required kills (one-line breaks that once passed the suite):", ""]
            for _, fn, text, hits in req:
                state = ", ".join(f"`{n.rpartition('.')[2]}` {st}" for n, st in hits) or "no mutant edits it"
                body.append(f"- `{fn}`: `{text}`: {state}")
            body.append("")
        sections[s.path] = "\n".join(body) + "\n"
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mutmut"]
    order = [f for f in conf["only_mutate"] if f in sections]
    totals = _totals_from(sections, order)
    parts = [
        "# Mutation testing",
        "",
        "Command: `make mutate` (`python -m bench.mutate [FILE ...]`): mutmut 3 on a `git archive` "
        'snapshot, tests from `[tool.mutmut]` in pyproject.toml on SQLite only (`-k "not postgres"`). '
        f"Target: at least {TARGET:.0%} of mutants caught per file, and every required kill caught. "
        "A timeout counts as caught; a mutant that no selected test reaches does not. Each file's "
        "section says when and on which commit it ran; files may come from different runs. "
        f"Machine: {os.cpu_count()} cores, shared with other work while these ran.",
        "",
        *HEADER,
        *totals,
        "",
    ]
    parts += [f"<!-- mutate:{f} -->\n{sections[f]}<!-- /mutate -->\n" for f in order]
    notes = re.search(r"(?s)<!-- notes -->\n.*?<!-- /notes -->\n", old)  # hand-written, kept
    if notes:
        parts.append(notes.group(0))
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text("\n".join(parts), encoding="utf-8")


def _totals_from(sections: dict[str, str], order: list[str]) -> list[str]:
    rows, caught, total = [], 0, 0
    for f in order:
        row = next((ln for ln in sections[f].splitlines() if ln.startswith(f"| {f} |")), None)
        if row is None:
            continue
        rows.append(row)
        c, t = (int(x) for x in row.split("|")[7].strip().split("/"))
        caught, total = caught + c, total + t
    if total:
        rows.append(f"| **total** | | | | | | {caught}/{total} | {caught / total:.1%} |")
    return rows


if __name__ == "__main__":
    sys.exit(main())
