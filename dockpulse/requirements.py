"""Print the named dependencies of pyproject.toml with their version specifiers, one a line.

Images install only what their service needs, with the versions the project declares:
    python3 dockpulse/requirements.py flask gunicorn > /tmp/requirements.txt
Standard library only, so a Dockerfile can run it before anything is installed.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~\[;(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def select(names: list[str], pyproject: Path = PYPROJECT) -> list[str]:
    """The project's dependency lines for `names`; ValueError naming any that is not declared."""
    declared = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    by_name = {_name(requirement): requirement for requirement in declared}
    wanted = [name.lower().replace("_", "-") for name in names]
    missing = [name for name in wanted if name not in by_name]
    if missing:
        raise ValueError(f"not declared in {pyproject.name}: {', '.join(missing)}")
    return [by_name[name] for name in wanted]


def main(argv: list[str]) -> int:
    try:
        print("\n".join(select(argv)))
    except ValueError as exc:
        print(f"requirements: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
