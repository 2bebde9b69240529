"""`make demo` on each path a user can be on, cold (a new engine data root) and warm (again).

- registry: their engine, pulling Docker Hub's images through a registry mirror (Debian's
  docker-registry on 127.0.0.1 holding the stand-ins under upstream names, as
  tests/stack/test_registry_demo.py sets it up); found through DOCKER_HOST;
- offline: their engine, no registry: every upstream image falls back to its Debian build;
- no-docker: no engine at all: the demo starts its private dockerd (root), and `down` stops it.

Each run is `dockpulse demo --no-follow` timed to its exit (stack healthy), then `dockpulse down`;
the load average is printed beside it (the machine may be shared). Root; binds the demo's ports.

    .venv/bin/python -m bench.demo_paths [--paths registry offline no-docker]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from dockpulse_stack.engine import DEFAULT_SOCKET, find_or_start_engine, start_private_dockerd
from dockpulse_stack.images import STACK_IMAGES, UPSTREAM_IMAGES, build_stack_images
from dockpulse_stack.rootfs import PYTHON_BASE_TAG, python_base_image
from testkit.registry import push_stand_ins, running_mirror

DOCKPULSE = Path(sys.executable).with_name("dockpulse")
CACHE = Path.home() / ".cache" / "dockpulse"
TEST_ENGINE_DIR = Path(os.environ.get("DOCKPULSE_TEST_ENGINE_DIR", "/tmp/dockpulse-test-engine"))
PATHS = ("registry", "offline", "no-docker")


def timed_demo(env: dict[str, str], demo_dir: Path) -> float:
    """Seconds `dockpulse demo --no-follow` takes, then `dockpulse down`."""
    env = {**env, "DOCKPULSE_DEMO_DIR": str(demo_dir)}
    started = time.monotonic()
    up = subprocess.run([str(DOCKPULSE), "demo", "--no-follow"], env=env, capture_output=True)
    elapsed = time.monotonic() - started
    subprocess.run([str(DOCKPULSE), "down"], env=env, capture_output=True)
    if up.returncode != 0:
        raise SystemExit(f"demo failed:\n{up.stderr.decode(errors='replace')[-3000:]}")
    return elapsed


@contextmanager
def engine_env(path: str, folder: Path) -> Iterator[dict[str, str]]:
    """The environment `dockpulse` runs in for `path`, its engine (if any) started here."""
    env = {key: value for key, value in os.environ.items() if key != "DOCKER_HOST"}
    if path == "no-docker":
        if DEFAULT_SOCKET.exists():
            raise SystemExit(f"{DEFAULT_SOCKET} exists: an engine runs here, not a fresh machine")
        yield {**env, "DOCKPULSE_ENGINE_DIR": str(folder / "engine")}
        return
    with ExitStack() as stack:
        mirrors: tuple[str, ...] = ()
        if path == "registry":
            stand_ins_engine = find_or_start_engine(TEST_ENGINE_DIR)
            build_stack_images(stand_ins_engine, tuple(i for i in STACK_IMAGES if i.debian_base))
            python_base_image(stand_ins_engine)
            mirror = stack.enter_context(running_mirror(CACHE / "registry-mirror"))
            stand_ins = {
                i.name: i.stand_in.tag if i.stand_in else PYTHON_BASE_TAG for i in UPSTREAM_IMAGES
            }
            push_stand_ins(stand_ins_engine, mirror.address, stand_ins)
            mirrors = (f"http://{mirror.address}",)
        engine = start_private_dockerd(folder / "engine", mirrors=mirrors)
        stack.callback(engine.stop)
        yield {**env, "DOCKER_HOST": engine.host}


def load_average() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    args = parser.parse_args()
    print(f"{'path':<10} {'run':<5} {'seconds':>8}   load average before (1, 5, 15 min)")
    for path in args.paths:
        folder = Path(tempfile.mkdtemp(prefix="dp-bench-", dir="/tmp"))
        try:
            with engine_env(path, folder) as env:
                for run in ("cold", "warm"):
                    load = load_average()
                    seconds = timed_demo(env, folder / "demo")
                    print(f"{path:<10} {run:<5} {seconds:8.0f}   {load}", flush=True)
                subprocess.run(
                    [str(DOCKPULSE), "down", "--volumes"],
                    env={**env, "DOCKPULSE_DEMO_DIR": str(folder / "demo")},
                    capture_output=True,
                )
        finally:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
