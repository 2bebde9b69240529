"""The fast tier's guard: a fast test cannot start a slow component or reach Docker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import NO_DOCKER, is_slow


def test_a_fast_test_is_marked_fast_and_cannot_start_dockerd(
    request: pytest.FixtureRequest,
) -> None:
    assert request.node.get_closest_marker("fast") is not None
    with pytest.raises(pytest.fail.Exception, match="is in the fast tier but starts dockerd"):
        subprocess.run(["/usr/sbin/dockerd", "--version"], check=False)
    with pytest.raises(pytest.fail.Exception, match="starts prometheus"):
        subprocess.run("prometheus --version", shell=True, check=False)
    assert os.environ["DOCKER_HOST"] == NO_DOCKER


def test_a_fast_test_may_run_a_short_tool() -> None:
    done = subprocess.run([sys.executable, "-c", "print(42)"], capture_output=True, check=True)
    assert done.stdout == b"42\n"


class FakeItem:
    """What is_slow reads of a collected test."""

    def __init__(self, fixtures: list[str], folder: str = "relay", **params: str) -> None:
        self.fixturenames = fixtures
        self.path = Path(__file__).parent / folder / "test_something.py"
        self.callspec = SimpleNamespace(params=params)

    def get_closest_marker(self, name: str) -> None:
        return None


@pytest.mark.parametrize(
    ("item", "slow"),
    [
        (FakeItem(["tmp_path", "certificate"]), False),
        (FakeItem(["tmp_path", "engine", "busybox"]), True),
        (FakeItem(["start_relay", "relay_store"], relay_store="sqlite"), True),
        (FakeItem(["relay_store"], relay_store="sqlite"), False),
        (FakeItem(["relay_store"], relay_store="postgresql"), True),
        (FakeItem(["tmp_path"], folder="stack"), True),
    ],
)
def test_a_test_is_slow_by_its_fixtures_parameters_and_folder(item: FakeItem, slow: bool) -> None:
    assert is_slow(item) is slow  # type: ignore[arg-type]
