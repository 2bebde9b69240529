"""The benchmarks share helpers with the tests through `testkit/`, never by importing a test
module (a test's fixtures and scenarios would then be a benchmark's hidden dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


def test_no_benchmark_and_no_testkit_module_imports_a_test_module() -> None:
    sources = [*(REPO / "bench").glob("*.py"), *(REPO / "testkit").glob("*.py")]
    assert len(sources) > 20
    offenders = sorted(
        f"{path.relative_to(REPO)} imports {module}"
        for path in sources
        for module in imported_modules(path)
        if module == "tests" or module.startswith("tests.")
    )
    assert offenders == []
