"""`dockpulse demo` and `dockpulse down` as a user runs them, on the test engine: up, up again
while up, up from a new clone (no `.demo/`), up after the record of its secrets was lost, and a
`down` that leaves nothing of the demo behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests

from dockpulse_stack.compose import Stack
from dockpulse_stack.demo import ENGINE_MARKER, stop_started_engine
from dockpulse_stack.demo_secrets import RECORD_VOLUME
from dockpulse_stack.engine import Engine, start_private_dockerd
from dockpulse_stack.rootfs import busybox_image

pytestmark = pytest.mark.docker

DOCKPULSE = Path(sys.executable).with_name("dockpulse")
PROJECT_FILTER = "label=com.docker.compose.project=dockpulse"


def dockpulse(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(DOCKPULSE), *args], env=env, capture_output=True, text=True, timeout=900
    )
    return result


def docker(engine: Engine, *args: str) -> list[str]:
    result = subprocess.run(["docker", *args], env=engine.env(), capture_output=True, text=True)
    return result.stdout.split()


def webapp_healthy() -> bool:
    try:
        return requests.get("http://127.0.0.1:8000/health", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def test_demo_up_again_new_clone_lost_record_and_down(
    engine: Engine, stack_images: None, tmp_path: Path
) -> None:
    demo_dir = tmp_path / "checkout" / ".demo"
    env = {**os.environ, "DOCKER_HOST": engine.host, "DOCKPULSE_DEMO_DIR": str(demo_dir)}
    try:
        first = dockpulse(env, "demo", "--no-follow")
        assert first.returncode == 0, first.stderr[-3000:]
        assert webapp_healthy()

        again = dockpulse(env, "demo", "--no-follow")
        assert again.returncode == 0, again.stderr[-3000:]
        assert "already up" in again.stderr

        # A new clone: no .demo/, the stack stopped, the volumes kept (PostgreSQL's password in
        # its volume is the recorded one).
        assert dockpulse(env, "down").returncode == 0
        shutil.rmtree(demo_dir)
        new_clone = dockpulse(env, "demo", "--no-follow")
        assert new_clone.returncode == 0, new_clone.stderr[-3000:]
        assert webapp_healthy()

        # Volumes left without the record of their secrets: explained, removed, started clean.
        assert dockpulse(env, "down").returncode == 0
        docker(engine, "volume", "rm", RECORD_VOLUME)
        lost = dockpulse(env, "demo", "--no-follow")
        assert lost.returncode == 0, lost.stderr[-3000:]
        assert "no longer recorded" in lost.stderr
        assert webapp_healthy()
    finally:
        down = dockpulse(env, "down", "--volumes")
    assert down.returncode == 0, down.stderr
    assert docker(engine, "ps", "--all", "--quiet", "--filter", PROJECT_FILTER) == []
    assert docker(engine, "volume", "ls", "--quiet", "--filter", PROJECT_FILTER) == []
    assert RECORD_VOLUME not in docker(engine, "volume", "ls", "--quiet")


def leftovers(state_dir: Path) -> list[str]:
    """Processes and mounts (network namespaces are bind mounts too) that mention `state_dir`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(state_dir) in cmdline:
            found.append(f"process {pid}: {cmdline[:120]}")
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    found += [f"mount: {line}" for line in mounts if str(state_dir) in line]
    return found


def test_down_stops_the_engine_it_started_and_leaves_nothing() -> None:
    # A short path: dockerd's containerd sockets live under it (108 bytes at most).
    state_dir = Path(tempfile.mkdtemp(prefix="dp-engine-", dir="/tmp"))
    engine = start_private_dockerd(state_dir)
    assert engine.process is not None
    try:
        subprocess.run(
            ["docker", "run", "-d", "--network=none", busybox_image(engine), "sleep", "600"],
            env=engine.env(),
            check=True,
            capture_output=True,
        )
        assert any("mount" in line for line in leftovers(state_dir))  # the check can see them
        (state_dir / ENGINE_MARKER).write_text(f"{engine.process.pid}\n")
        stop_started_engine(state_dir)
        deadline = time.monotonic() + 30
        while leftovers(state_dir) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert leftovers(state_dir) == []
    finally:
        engine.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


def test_a_service_that_is_not_healthy_is_named_with_its_health_check_and_log(
    engine: Engine, busybox: str, tmp_path: Path
) -> None:
    project = f"dp-unhealthy-{uuid.uuid4().hex[:8]}"
    labels = [f"--label=com.docker.compose.project={project}"]
    labels += ["--label=com.docker.compose.service=webapp"]
    health = ["--health-cmd=echo database refused the password; exit 1"]
    health += ["--health-interval=1s", "--health-retries=1"]
    command = ["sh", "-c", "echo starting; echo password authentication failed; sleep 600"]
    container = docker(engine, "run", "-d", "--network=none", *labels, *health, busybox, *command)[
        0
    ]
    try:
        stack = Stack(engine.host, tmp_path / "compose.env", project=project)
        deadline = time.monotonic() + 30
        while "unhealthy" not in (report := "\n".join(stack.not_ready())):
            assert time.monotonic() < deadline, report
            time.sleep(0.5)
        assert stack.services() == {"webapp": False}
        assert "running, unhealthy" in report
        assert "last health check (exit 1): database refused the password" in report
        assert "password authentication failed" in report  # the log's tail
    finally:
        docker(engine, "rm", "-f", container)
