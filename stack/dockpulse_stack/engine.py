"""A Docker engine to work against: the one at DOCKER_HOST, or a private dockerd we start.

Used by the tests, the benchmarks and `make demo`. A private engine never touches the host's
networking: no bridge, no iptables, no masquerading; containers use `--network host` or `none`.
"""

from __future__ import annotations

import hashlib
import json
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
DEFAULT_SOCKET = Path("/var/run/docker.sock")
# Signs of a Docker installation of any origin (docker.io, docker-ce, containerd.io, Desktop):
# where one is present, dockpulse never installs Debian's docker.io over it.
DOCKER_COMMANDS = ("dockerd", "docker", "containerd")
GROUP_HINT = "sudo usermod -aG docker $USER, then log in again"


class EngineError(StackError):
    """The Docker engine could not be found or started."""


@dataclass
class Engine:
    """A reachable Docker engine; `owned` when we started it and must stop it."""

    host: str
    owned: bool = False
    source: str = "DOCKER_HOST"  # how it was found, as the demo says it
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


def start_private_dockerd(
    state_dir: Path = DEFAULT_STATE_DIR,
    timeout: float = 60.0,
    socket: Path | None = None,
    group: str | None = None,
    mirrors: tuple[str, ...] = (),
    data_root: Path | None = None,
) -> Engine:
    """Start a private dockerd with its own data root (`data_root`, by default in `state_dir`),
    exec root and unix socket (`socket`, by default in `state_dir`, owned by `group` when
    given), pulling Docker Hub's images through `mirrors` when given; Debian's docker.io is
    installed first only where no Docker installation is present at all."""
    if docker_installed():
        missing = [command for command in ENGINE_PACKAGES if shutil.which(command) is None]
        if missing:
            raise EngineError(
                f"Docker is installed here without {', '.join(missing)} on PATH: start your "
                "Docker engine (sudo systemctl start docker), or set DOCKER_HOST"
            )
    else:
        ensure_debian_packages(ENGINE_PACKAGES)
    if os.geteuid() != 0:
        raise EngineError("starting a private dockerd needs root; or set DOCKER_HOST to an engine")
    state_dir.mkdir(parents=True, exist_ok=True)
    host = f"unix://{socket or state_dir / 'docker.sock'}"
    if engine_answers(host):
        return Engine(host=host, owned=False, state_dir=state_dir)
    log = (state_dir / "dockerd.log").open("ab")
    process = subprocess.Popen(
        [
            "dockerd",
            f"--data-root={data_root or state_dir / 'data'}",
            f"--exec-root={state_dir / 'exec'}",
            f"--pidfile={state_dir / 'dockerd.pid'}",
            f"--host={host}",
            *([f"--group={group}"] if group else []),
            *(f"--registry-mirror={mirror}" for mirror in mirrors),
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


def docker_context_host(config_dir: Path | None = None) -> tuple[str, str] | None:
    """(host, context name) of the Docker CLI's current context (DOCKER_CONTEXT, else
    `currentContext` of config.json), None for the default context or none at all."""
    config_dir = config_dir or Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker"))
    name = os.environ.get("DOCKER_CONTEXT")
    if not name:
        try:
            name = json.loads((config_dir / "config.json").read_text()).get("currentContext")
        except (OSError, ValueError, AttributeError):
            return None
    if not name or name == "default":
        return None
    meta = config_dir / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
    try:
        endpoint = json.loads((meta / "meta.json").read_text())["Endpoints"]["docker"]["Host"]
    except (OSError, ValueError, KeyError, TypeError):
        raise EngineError(
            f"the Docker context {name!r} has no endpoint in {meta}/meta.json: "
            "`docker context use default`, or set DOCKER_HOST"
        ) from None
    return str(endpoint), name


def engine_candidates() -> list[Engine]:
    """Where users' engines listen, in the order the Docker CLI looks: DOCKER_HOST, the
    current context, the default socket, then the rootless one."""
    host = os.environ.get("DOCKER_HOST")
    if host:
        return [Engine(host=host, source="DOCKER_HOST")]
    candidates = []
    context = docker_context_host()
    if context is not None:
        candidates.append(Engine(host=context[0], source=f"docker context {context[1]}"))
    candidates.append(Engine(host=f"unix://{DEFAULT_SOCKET}", source="the default socket"))
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        rootless = Path(runtime_dir) / "docker.sock"
        candidates.append(Engine(host=f"unix://{rootless}", source="rootless Docker"))
    return candidates


def check_socket_access(host: str) -> None:
    """EngineError naming the socket and the fix when it exists but this user may not use it."""
    if not host.startswith("unix://"):
        return
    socket = Path(host.removeprefix("unix://"))
    if socket.exists() and not os.access(socket, os.R_OK | os.W_OK):
        raise EngineError(
            f"permission denied on {socket}: add yourself to the docker group ({GROUP_HINT}), "
            "or set DOCKER_HOST"
        )


def docker_installed() -> bool:
    """True when any Docker installation is on this machine (commands or the default socket)."""
    return DEFAULT_SOCKET.exists() or any(shutil.which(c) for c in DOCKER_COMMANDS)


def discover_engine(state_dir: Path = DEFAULT_STATE_DIR) -> Engine:
    """The user's engine (the first of `engine_candidates` that answers); only when none does,
    a private dockerd (root, with dockerd present or installable from Debian's docker.io)."""
    candidates = engine_candidates()
    for candidate in candidates:
        check_socket_access(candidate.host)
        if engine_answers(candidate.host):
            return candidate
        if candidate.source == "DOCKER_HOST" or candidate.source.startswith("docker context"):
            raise EngineError(
                f"the Docker engine at {candidate.host} ({candidate.source}) does not answer: "
                "start it, or point DOCKER_HOST elsewhere"
            )
    if docker_installed() and (shutil.which("dockerd") is None or os.geteuid() != 0):
        raise EngineError(
            f"no Docker engine answers at {', '.join(c.host for c in candidates)}: start "
            "Docker (sudo systemctl start docker), or set DOCKER_HOST"
        )
    engine = start_private_dockerd(state_dir)
    engine.source = "a private dockerd of dockpulse's"
    return engine


def find_or_start_engine(state_dir: Path = DEFAULT_STATE_DIR) -> Engine:
    """The tests' and benchmarks' engine: the one at DOCKER_HOST when set (EngineError when it
    does not answer); otherwise a private one, started when it does not run yet. Never the
    user's default engine found by `discover_engine`: tests start and kill containers."""
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
