"""The test-support layer: a real Docker engine and locally built images for any test.

The engine at DOCKER_HOST is used when it answers; otherwise a private dockerd is started (and
installed first, as root on Debian) and stopped at the end of the session.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockpulse_stack.engine import Engine, find_or_start_engine
from dockpulse_stack.rootfs import busybox_image, python_base_image

TEST_ENGINE_DIR = Path(os.environ.get("DOCKPULSE_TEST_ENGINE_DIR", "/tmp/dockpulse-test-engine"))


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    engine = find_or_start_engine(TEST_ENGINE_DIR)
    os.environ["DOCKER_HOST"] = engine.host
    yield engine
    engine.stop()


@pytest.fixture(scope="session")
def busybox(engine: Engine) -> str:
    """Tag of a busybox image built from the host's busybox-static."""
    return busybox_image(engine)


@pytest.fixture(scope="session")
def python_base(engine: Engine) -> str:
    """Tag of a Debian bookworm image with Python 3, built by mmdebstrap."""
    return python_base_image(engine)
