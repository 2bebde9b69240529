"""Debian's docker-registry (distribution v2) on 127.0.0.1, standing in for Docker Hub as an
engine's `--registry-mirror`, and the stand-in images pushed to it under upstream names. For
the tests and the benchmarks."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from dockpulse_stack.engine import Engine
from dockpulse_stack.host_packages import ensure_debian_packages
from testkit.helpers import free_port

REGISTRY_CONFIG = """\
version: 0.1
log: {{level: info, accesslog: {{disabled: false}}}}
storage: {{filesystem: {{rootdirectory: {storage}}}, delete: {{enabled: true}}}}
http: {{addr: "127.0.0.1:{port}"}}
"""


@dataclass
class Mirror:
    """Debian's docker-registry on 127.0.0.1, its access log in `log`."""

    address: str
    log: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


def mirror_path(name: str) -> str:
    """Where a Docker Hub image lives in a mirror: `library/` for the official images."""
    return name if "/" in name.partition(":")[0] else f"library/{name}"


def docker(host: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": host}
    return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=600)


def push_stand_ins(engine: Engine, address: str, stand_ins: dict[str, str]) -> None:
    """Each stand-in (upstream name: local tag) under its upstream name, pushed unless the
    mirror's manifest already has its config (= the local image id): with its storage cached,
    a warm run pushes nothing."""
    for name, stand_in in stand_ins.items():
        image_id = docker(engine.host, "image", "inspect", "--format={{.Id}}", stand_in).stdout
        repository, _, tag = mirror_path(name).partition(":")
        manifest = requests.get(
            f"http://{address}/v2/{repository}/manifests/{tag}",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
            timeout=10,
        )
        if manifest.ok and manifest.json()["config"]["digest"] == image_id.strip():
            continue
        target = f"{address}/{mirror_path(name)}"
        docker(engine.host, "tag", stand_in, target)
        pushed = docker(engine.host, "push", "--quiet", target)
        docker(engine.host, "rmi", target)
        assert pushed.returncode == 0, pushed.stderr


@contextmanager
def running_mirror(storage: Path) -> Iterator[Mirror]:
    """A registry on a free port of 127.0.0.1 keeping its blobs in `storage`; stopped on exit."""
    ensure_debian_packages({"docker-registry": "docker-registry"})  # a fresh machine has none
    folder = Path(tempfile.mkdtemp(prefix="dp-mirror-"))
    storage.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = folder / "config.yml"
    config.write_text(REGISTRY_CONFIG.format(storage=storage, port=port))
    log = folder / "registry.log"
    with log.open("ab") as output:
        process = subprocess.Popen(
            ["/usr/bin/docker-registry", "serve", str(config)], stdout=output, stderr=output
        )
    mirror = Mirror(f"127.0.0.1:{port}", log, process)
    try:
        deadline = time.monotonic() + 30
        while not registry_answers(mirror.address):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield mirror
    finally:
        mirror.stop()
        shutil.rmtree(folder, ignore_errors=True)


def registry_answers(address: str) -> bool:
    try:
        return requests.get(f"http://{address}/v2/", timeout=2).ok
    except requests.RequestException:
        return False
