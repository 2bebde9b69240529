"""The test-support layer: a real Docker engine and locally built images for any test, and the
two tiers of the suite.

The engine at DOCKER_HOST is used when it answers; otherwise a private dockerd is started (and
installed first, as root on Debian) and stopped at the end of the session.

Tiers: a test is marked `fast` (`make test-fast`) unless it uses a fixture of SLOW_FIXTURES (or
one that uses one: pytest's fixture closure), a slow parameter, lives in SLOW_FOLDERS, or is
marked `slow` itself. A fast test runs guarded: starting dockerd, Prometheus, Alertmanager,
PostgreSQL, Chromium... or talking to Docker fails it, naming what to mark, so a test cannot sit
in the wrong tier.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockpulse_stack.engine import Engine, find_or_start_engine
from dockpulse_stack.rootfs import busybox_image, python_base_image

TEST_ENGINE_DIR = Path(os.environ.get("DOCKPULSE_TEST_ENGINE_DIR", "/tmp/dockpulse-test-engine"))

# Fixtures that start a real component (dockerd, Prometheus, Alertmanager, blackbox_exporter,
# PostgreSQL, relay or exporter processes, a stack): a test using one is in the slow tier.
SLOW_FIXTURES = frozenset(
    {
        *("engine", "private_engine", "users_engine", "stack", "stack_images", "scale_stack"),
        *("prometheus", "alertmanager", "blackbox", "compat_stack", "live_stack", "local_stack"),
        *("start_relay", "postgres_server", "postgres", "webapp", "loadtest_webapp"),
        "start_locust",
    }
)
SLOW_PARAMETERS = {"relay_store": {"postgresql"}}
# Whole folders of real stacks (tests/stack also binds fixed ports: run it under the stack lock).
SLOW_FOLDERS = ("stack", "scale", "e2e", "hosts")
# Programs a fast test must not start (basename prefixes).
SLOW_PROGRAMS = (
    *("dockerd", "containerd", "docker", "prometheus", "alertmanager", "blackbox_exporter"),
    *("postgres", "initdb", "pg_ctl", "chromium", "qemu", "haproxy", "mmdebstrap", "registry"),
)
NO_DOCKER = "unix:///nonexistent/the-fast-tier-has-no-docker.sock"


def is_slow(item: pytest.Item) -> bool:
    if item.get_closest_marker("slow") or item.get_closest_marker("guest"):
        return True
    folder = item.path.relative_to(Path(__file__).parent).parts[0]
    if folder in SLOW_FOLDERS:
        return True
    if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return True
    params = getattr(getattr(item, "callspec", None), "params", {})
    return any(params.get(name) in values for name, values in SLOW_PARAMETERS.items())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    fast = pytest.mark.fast
    for item in items:
        if not is_slow(item):
            item.add_marker(fast)


def _refuse(what: str, item: pytest.Item) -> None:
    pytest.fail(
        f"{item.nodeid} is in the fast tier but {what}: give it the fixture that provides "
        "this (see SLOW_FIXTURES in tests/conftest.py) or mark it @pytest.mark.slow",
        pytrace=False,
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Run a fast test (its setup and teardown too) with the slow components out of reach."""
    if item.get_closest_marker("fast") is None:
        yield
        return
    popen_init = subprocess.Popen.__init__

    def guarded_popen(self: subprocess.Popen, args: object, *rest: object, **kw: object) -> None:
        if isinstance(args, str | bytes):
            first: object = (args.split() or [""])[0]  # shell=True: the command's first word
        elif isinstance(args, os.PathLike):
            first = args
        else:
            first = next(iter(args), "")  # type: ignore[call-overload]
        program = Path(os.fsdecode(first)).name  # type: ignore[arg-type]
        if program.startswith(SLOW_PROGRAMS):
            _refuse(f"starts {program}", item)
        popen_init(self, args, *rest, **kw)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess.Popen, "__init__", guarded_popen)
        patch.setenv("DOCKER_HOST", NO_DOCKER)
        yield


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
