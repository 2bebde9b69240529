"""The relay's layout stays a pipeline: its stages import only downward, with no cycle, and the
webhook path (intake) loads neither matplotlib nor a mail backend."""

from __future__ import annotations

import ast
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import dockpulse_relay

PACKAGE = Path(dockpulse_relay.__file__).parent
# What each part may import, by layer: only parts of a lower layer (and its own modules).
LAYERS = {
    "model": 0,
    "times": 0,
    "config": 0,
    "metrics": 0,
    "store": 1,
    "intake": 2,
    "compose": 2,
    "deliver": 2,
    "plan": 3,
    "app": 4,
    "cli": 5,
}


def relay_imports() -> dict[str, set[str]]:
    """Module -> the relay modules it imports (anywhere in it, lazy imports too)."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(("dockpulse_relay", *path.relative_to(PACKAGE).with_suffix("").parts))
        module = module.removesuffix(".__init__")
        found[module] = {
            node.module
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("dockpulse_relay.")
        }
    return found


def part(module: str) -> str:
    return module.split(".")[1]


def test_every_part_has_a_layer() -> None:
    parts = {part(module) for module in relay_imports() if module != "dockpulse_relay"}
    assert parts == set(LAYERS)


def upward(imports: dict[str, set[str]]) -> list[str]:
    """Imports of a part of the same or a higher layer."""
    return [
        f"{module} imports {imported}"
        for module, found in imports.items()
        for imported in found
        if part(imported) != part(module) and LAYERS[part(imported)] >= LAYERS[part(module)]
    ]


def test_the_stages_import_only_downward() -> None:
    assert upward(relay_imports()) == []


def test_no_module_cycle() -> None:
    try:
        TopologicalSorter(relay_imports()).prepare()
    except CycleError as exc:
        raise AssertionError(f"import cycle: {exc.args[1]}") from None


def test_the_layer_check_sees_an_upward_or_sideways_import() -> None:
    imports = relay_imports()
    imports["dockpulse_relay.store.sql"] = {"dockpulse_relay.plan.rules"}
    imports["dockpulse_relay.intake.webhook"] = {"dockpulse_relay.compose.chart"}
    assert sorted(upward(imports)) == [
        "dockpulse_relay.intake.webhook imports dockpulse_relay.compose.chart",
        "dockpulse_relay.store.sql imports dockpulse_relay.plan.rules",
    ]


def test_the_webhook_path_loads_no_chart_and_no_backend() -> None:
    """Accepting an alert must not pay for (or break on) matplotlib, boto3 or SMTP."""
    code = (
        "import sys, dockpulse_relay.intake.webhook, dockpulse_relay.store.open\n"
        "heavy = ('matplotlib', 'boto3', 'botocore', 'smtplib', 'dockpulse_relay.compose',"
        " 'dockpulse_relay.deliver', 'dockpulse_relay.plan')\n"
        "print(sorted({m.split('.')[0] if not m.startswith('dockpulse_relay') else m"
        " for m in sys.modules if m.startswith(heavy)}))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert loaded == "[]"


def test_every_stage_ships_in_the_wheel() -> None:
    """A folder without __init__.py is left out of the wheel and the image (find_packages)."""
    from setuptools import find_packages

    folders = {
        ".".join(("dockpulse_relay", *path.relative_to(PACKAGE).parts))
        for path in PACKAGE.rglob("*")
        if path.is_dir() and path.name != "__pycache__"
    }
    assert folders <= set(find_packages(str(PACKAGE.parent)))
