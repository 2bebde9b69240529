"""A Docker engine to work against: the one at DOCKER_HOST, or a private dockerd we start.

Used by the tests, the benchmarks and `make demo`. A private engine never touches the host's
networking: no bridge, no iptables, no masquerading; containers use `--network host` or `none`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import docker
import requests

from dockpulse_stack.errors import StackError
from dockpulse_stack.host_packages import ensure_debian_packages

# One private engine per machine, shared by every checkout (DOCKPULSE_ENGINE_DIR to move it).
DEFAULT_STATE_DIR = Path(os.environ.get("DOCKPULSE_ENGINE_DIR", "/tmp/dockpulse-engine"))
ENGINE_PACKAGES = {"dockerd": "docker.io", "containerd": "containerd", "docker": "docker.io"}
DOCKERD_FLAGS = ("--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false")


class EngineError(StackError):
    """The Docker engine could not be found or started."""


@dataclass
class Engine:
    """A reachable Docker engine; `owned` when we started it and must stop it."""

    host: str
    owned: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    state_dir: Path | None = None

    def client(self, timeout: int = 60) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.host, timeout=timeout)

    def env(self) -> dict[str, str]:
        """The environment for a `docker` CLI call against this engine."""
        return {**os.environ, "DOCKER_HOST": self.host}

    def stop(self) -> None:
        """Stop the engine if we started it: containers first, then dockerd."""
        if not self.owned or self.process is None:
            return
        try:
            with closing(self.client(timeout=20)) as client:
                for container in client.containers.list():
                    container.kill()
        except (docker.errors.DockerException, requests.RequestException):
            pass
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
        if self.state_dir is not None:
            unmount_leftovers(self.state_dir)


def unmount_leftovers(state_dir: Path) -> None:
    """Unmount what a stopped dockerd leaves under its state folder (its exec root keeps the
    host's network namespace bind-mounted at `netns/default`), deepest first."""
    prefix = str(state_dir.resolve()) + "/"
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", mount], capture_output=True)


def engine_answers(host: str, timeout: float = 3.0) -> bool:
    """True when a Docker engine at `host` answers a ping."""
    try:
        with closing(docker.DockerClient(base_url=host, timeout=timeout)) as client:
            return bool(client.ping())
    except (docker.errors.DockerException, requests.RequestException, OSError):
        return False


def start_private_dockerd(state_dir: Path = DEFAULT_STATE_DIR, timeout: float = 60.0) -> Engine:
    """Start a private dockerd with its own data root, exec root and unix socket."""
    ensure_debian_packages(ENGINE_PACKAGES)
    if os.geteuid() != 0:
        raise EngineError("starting a private dockerd needs root; or set DOCKER_HOST to an engine")
    state_dir.mkdir(parents=True, exist_ok=True)
    socket = state_dir / "docker.sock"
    host = f"unix://{socket}"
    if engine_answers(host):
        return Engine(host=host, owned=False, state_dir=state_dir)
    log = (state_dir / "dockerd.log").open("ab")
    process = subprocess.Popen(
        [
            "dockerd",
            f"--data-root={state_dir / 'data'}",
            f"--exec-root={state_dir / 'exec'}",
            f"--pidfile={state_dir / 'dockerd.pid'}",
            f"--host={host}",
            *DOCKERD_FLAGS,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EngineError(
                f"dockerd exited with {process.returncode}: {last_line(state_dir / 'dockerd.log')}"
                f" (whole log: {state_dir}/dockerd.log)"
            )
        if engine_answers(host, timeout=1.0):
            return Engine(host=host, owned=True, process=process, state_dir=state_dir)
        time.sleep(0.3)
    process.kill()
    raise EngineError(f"dockerd did not answer within {timeout:.0f}s; see {state_dir}/dockerd.log")


def last_line(log: Path) -> str:
    """The last line of a log file, or a note that there is none."""
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1] if lines else "empty log"


def find_or_start_engine(state_dir: Path = DEFAULT_STATE_DIR) -> Engine:
    """The engine at DOCKER_HOST when set (EngineError when it does not answer); otherwise a
    private one, started when it does not run yet."""
    host = os.environ.get("DOCKER_HOST")
    if host:
        if engine_answers(host):
            return Engine(host=host)
        raise EngineError(
            f"the Docker engine at DOCKER_HOST={host} does not answer: start it, or unset "
            "DOCKER_HOST to let dockpulse start a private one"
        )
    return start_private_dockerd(state_dir)


@contextmanager
def temporary_engine(prefix: str = "dp-engine-") -> Iterator[Engine]:
    """A private dockerd of its own, standing in for another Docker host on this machine;
    stopped and its state folder removed on exit. The folder is a short one under /tmp:
    containerd's socket paths inside it must stay under 108 bytes."""
    state_dir = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        engine = start_private_dockerd(state_dir)
        try:
            yield engine
        finally:
            engine.stop()
    finally:
        unmount_leftovers(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)
