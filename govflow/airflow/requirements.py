"""The Airflow environment's requirements: govflow's own without Prefect, the ``airflow`` extra, pytest.

Airflow 3.3 pins FastAPI below 0.137 and Prefect 3.9 needs 0.139 or later, so the two cannot be
installed together; the Airflow DAGs never import Prefect. ``make install-airflow`` installs
these lines, then govflow itself with ``--no-deps``.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

LEAVE_OUT = {"prefect"}
TEST_TOOLS = {"pytest", "pytest-timeout"}


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()


def requirements(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    base = [r for r in project["dependencies"] if _name(r) not in LEAVE_OUT]
    tests = [r for r in extras["dev"] if _name(r) in TEST_TOOLS]
    return [*base, *extras["airflow"], *tests]


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2]
    print("\n".join(requirements(root / "pyproject.toml")))
