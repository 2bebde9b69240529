"""`make demo` on a fresh machine: what is missing is installed once, before any parallel work, and
every failure a user can meet ends in one line with exit status 2.

A fresh machine is made by hiding commands from PATH (a folder of links to every other command),
so the installer really runs. `apt-get` in that folder is a wrapper around the real one that logs
when each run starts and ends (overlapping runs are the bug this guards against) and, after an
install, links the installed command into the folder, as installing would on a fresh machine.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockpulse_stack.engine import Engine, start_private_dockerd
from testkit.helpers import free_port

pytestmark = pytest.mark.docker

SYSTEM_BIN = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
DOCKPULSE = Path(sys.executable).with_name("dockpulse")
APT_WRAPPER = """#!/bin/bash
# mmdebstrap runs apt-get too, with an APT_CONFIG of its own for its chroot: not the host's apt;
# and only runs that change the host's apt state count.
[ -n "$APT_CONFIG" ] && exec /usr/bin/apt-get "$@"
case " $* " in *" update "*|*" install "*) ;; *) exec /usr/bin/apt-get "$@" ;; esac
echo "start $$ $(date +%s.%N) $*" >> {log}
/usr/bin/apt-get "$@"; status=$?
echo "end $$ $(date +%s.%N)" >> {log}
if [ $status = 0 ] && [[ " $* " == *" install "* ]]; then
    for command in {hidden}; do
        for dir in /usr/sbin /usr/bin /sbin /bin; do
            [ -x "$dir/$command" ] && ln -sf "$dir/$command" {folder}/$command && break
        done
    done
fi
exit $status
"""
TRIVIAL_DOCKERFILE = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN true\n"


def fresh_path(folder: Path, hidden: tuple[str, ...]) -> str:
    """A PATH on which the `hidden` commands are missing and apt-get is the logging wrapper.
    apt's methods run as the `_apt` user, who must be able to reach the folder."""
    folder.mkdir(mode=0o755)
    for parent in list(folder.parents)[:3]:
        parent.chmod(parent.stat().st_mode | 0o755)
    for directory in SYSTEM_BIN:
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            link = folder / name
            if name not in hidden and not link.exists() and not link.is_symlink():
                link.symlink_to(Path(directory) / name)
    wrapper = folder / "apt-get"
    wrapper.unlink()
    log = folder.parent / "apt-runs.log"
    wrapper.write_text(APT_WRAPPER.format(log=log, hidden=" ".join(hidden), folder=folder))
    wrapper.chmod(0o755)
    return str(folder)


def apt_runs(log: Path) -> list[tuple[float, float]]:
    """(start, end) of every apt-get run the wrapper saw."""
    if not log.exists():
        return []
    starts: dict[str, float] = {}
    runs = []
    for line in log.read_text().splitlines():
        event, pid, when = line.split()[:3]
        if event == "start":
            starts[pid] = float(when)
        else:
            runs.append((starts.pop(pid), float(when)))
    assert not starts, "an apt-get run never ended"
    return runs


def dockpulse(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DOCKPULSE), *args], env=env, capture_output=True, text=True, timeout=600
    )


def assert_one_line_exit_2(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("dockpulse: ")
    for word in words:
        assert word in line, line
    return line


@pytest.fixture
def private_engine() -> Iterator[Engine]:
    """An engine of its own with no images: every base image must be built from scratch.
    A short path: dockerd's containerd sockets live under it (108 bytes at most)."""
    state_dir = Path(tempfile.mkdtemp(prefix="dp-engine-", dir="/tmp"))
    engine = start_private_dockerd(state_dir)
    yield engine
    engine.stop()
    shutil.rmtree(state_dir, ignore_errors=True)


def test_a_cold_parallel_build_installs_mmdebstrap_once_before_building(
    tmp_path: Path, private_engine: Engine
) -> None:
    path = fresh_path(tmp_path / "bin", hidden=("mmdebstrap",))
    dockerfile = tmp_path / "trivial.Dockerfile"
    dockerfile.write_text(TRIVIAL_DOCKERFILE)
    build = f"""
from dockpulse_stack.engine import Engine
from dockpulse_stack.images import LocalImage, build_stack_images
debian = LocalImage("dockpulse-test/on-debian:x", {str(dockerfile)!r},
                    ("dockpulse-test/rootfs:x", ("busybox",)))
python = LocalImage("dockpulse-test/on-python:x", {str(dockerfile)!r})
build_stack_images(Engine({private_engine.host!r}), (debian, python))
"""
    env = {**os.environ, "PATH": path}
    result = subprocess.run(
        [sys.executable, "-c", build], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = apt_runs(tmp_path / "apt-runs.log")
    assert len(runs) == 2, runs  # one `apt-get update`, one `apt-get install`, for the whole run
    (_, first_end), (second_start, _) = sorted(runs)
    assert second_start >= first_end, "two apt-get runs overlapped"
    assert "installing Debian packages: mmdebstrap" in result.stderr


def test_missing_packages_without_root_say_what_to_run(tmp_path: Path) -> None:
    path = fresh_path(tmp_path / "bin", hidden=("dockerd", "containerd", "docker"))
    env = {**os.environ, "PATH": path}
    env.pop("DOCKER_HOST", None)
    # A user namespace without a mapping: dockpulse runs as uid 65534, not root.
    command = ["/usr/bin/unshare", "--user", str(DOCKPULSE), "engine"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert_one_line_exit_2(result, "install as root: apt-get install containerd docker.io")
    assert apt_runs(tmp_path / "apt-runs.log") == []


def isolated_apt(tmp_path: Path) -> Path:
    """An APT_CONFIG with its own (empty) lists and cache, and a proxy nobody listens on: apt as
    on a machine without network to the mirror, leaving the machine's own apt state alone."""
    for folder in ("lists/partial", "cache/archives/partial"):
        (tmp_path / "apt" / folder).mkdir(parents=True)
    config = tmp_path / "apt" / "apt.conf"
    config.write_text(
        f'Acquire::http::Proxy "http://127.0.0.1:{free_port()}";\n'
        f'Dir::State::Lists "{tmp_path}/apt/lists";\nDir::Cache "{tmp_path}/apt/cache";\n'
    )
    return config


def test_no_network_to_the_mirror_is_one_line(tmp_path: Path) -> None:
    path = fresh_path(tmp_path / "bin", hidden=("dockerd", "containerd", "docker"))
    env = {**os.environ, "PATH": path, "APT_CONFIG": str(isolated_apt(tmp_path))}
    env.pop("DOCKER_HOST", None)
    result = dockpulse("engine", env=env)
    assert_one_line_exit_2(result, "apt-get update failed", "check the network")


def test_apt_busy_is_waited_for_then_one_line(tmp_path: Path) -> None:
    path = fresh_path(tmp_path / "bin", hidden=("dockerd", "containerd", "docker"))
    config = isolated_apt(tmp_path)
    env = {**os.environ, "PATH": path, "APT_CONFIG": str(config), "DOCKPULSE_APT_WAIT": "3"}
    env.pop("DOCKER_HOST", None)
    with (tmp_path / "apt" / "lists" / "lock").open("w") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)  # another apt run, as apt itself locks
        result = dockpulse("engine", env=env)
    assert "waiting for another apt run" in result.stderr
    assert_one_line_exit_2(result, "apt-get update failed", "another apt run holds the lock")


def test_an_engine_that_does_not_answer_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/nobody.sock"}
    assert_one_line_exit_2(dockpulse("demo", "--no-follow", env=env), "does not answer")


def test_a_port_already_taken_is_one_line_naming_it(engine: Engine, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            taken.bind(("127.0.0.1", 9487))
        except OSError:
            pytest.fail("port 9487 is busy before the test; is a stack still running?")
        taken.listen()
        # Its own demo folder: the checkout's .demo, made by root, would stop a docker-group
        # user's image builds there later ("can't stat .demo": the legacy builder checks it
        # though .dockerignore leaves it out).
        env = {**os.environ, "DOCKER_HOST": engine.host, "DOCKPULSE_DEMO_DIR": str(tmp_path)}
        result = dockpulse("demo", "--no-follow", env=env)
    line = assert_one_line_exit_2(result, "port 9487 (for exporter) is already in use by")
    assert f"(pid {os.getpid()})" in line
