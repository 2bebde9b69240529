"""The images install the dependencies pyproject.toml declares, with its version specifiers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dockpulse.requirements import select

ROOT = Path(__file__).resolve().parents[2]


def test_selects_the_declared_lines_by_name() -> None:
    lines = select(["flask", "PyYAML", "psycopg2_binary"])
    assert [line.split(">")[0] for line in lines] == ["flask", "pyyaml", "psycopg2-binary"]
    assert all(">=" in line for line in lines)


def test_an_undeclared_name_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match=r"not declared in pyproject\.toml: leftpad"):
        select(["flask", "leftpad"])


@pytest.mark.parametrize("dockerfile", ["webapp/Dockerfile", "loadtest/Dockerfile"])
def test_the_dockerfiles_name_only_declared_dependencies(dockerfile: str) -> None:
    text = (ROOT / dockerfile).read_text().replace("\\\n", " ")
    command = next(line for line in text.splitlines() if line.startswith("RUN python3 dockpulse"))
    names = command.split("requirements.py", 1)[1].split(">", 1)[0].split()
    result = subprocess.run(
        [sys.executable, str(ROOT / "dockpulse" / "requirements.py"), *names],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split()) == len(names)
