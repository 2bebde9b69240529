"""A service image holds its service, the shared runtime and its own dependencies, nothing else:
no stack tooling (apt, dockerd), no other service, no other service's libraries."""

from __future__ import annotations

import subprocess

import pytest

from dockpulse_stack.engine import Engine
from dockpulse_stack.images import EXPORTER, LOADTEST, RELAY, WEBAPP, LocalImage, build_local_image

pytestmark = pytest.mark.docker

SERVICES = {  # image: (its package, a library only it needs)
    EXPORTER: ("dockpulse_exporter", "docker"),
    RELAY: ("dockpulse_relay", "boto3"),
    WEBAPP: ("dockpulse_webapp", "flask"),
    LOADTEST: ("dockpulse_loadtest", "locust"),
}
ALSO_NEEDED = {LOADTEST: {"flask"}}  # Locust's web UI is Flask
CHECK = """
import importlib.util, sys
present = [name for name in sys.argv[1:] if importlib.util.find_spec(name)]
print(" ".join(present))
"""


def importable(engine: Engine, image: LocalImage, names: list[str]) -> set[str]:
    run = ["docker", "run", "--rm", "--network=none", "--entrypoint=python", image.tag]
    result = subprocess.run(
        [*run, "-c", CHECK, *names],
        env=engine.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


@pytest.mark.parametrize("image", list(SERVICES), ids=lambda image: image.tag)
def test_an_image_holds_its_service_and_the_runtime_only(engine: Engine, image: LocalImage) -> None:
    build_local_image(engine, image)
    own_package, own_library = SERVICES[image]
    others = [name for other in SERVICES.values() for name in other if other != SERVICES[image]]
    names = ["dockpulse.settings", own_package, own_library, "dockpulse_stack", *others]
    expected = {"dockpulse.settings", own_package, own_library} | ALSO_NEEDED.get(image, set())
    assert importable(engine, image, names) == expected
