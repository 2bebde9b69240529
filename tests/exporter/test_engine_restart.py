"""The Docker engine restarting under the exporter: docker_up goes 0, then 1; no crash."""

from __future__ import annotations

import subprocess
from contextlib import closing
from pathlib import Path

from dockpulse_stack.engine import Engine, start_private_dockerd
from testkit.helpers import value, wait_until


def copy_image(tag: str, source: Engine, target: Engine) -> None:
    """Images are per engine: `docker save | docker load` one across."""
    save = subprocess.Popen(["docker", "save", tag], stdout=subprocess.PIPE, env=source.env())
    subprocess.run(
        ["docker", "load", "-q"],
        stdin=save.stdout,
        env=target.env(),
        check=True,
        capture_output=True,
    )
    save.wait()


def test_engine_restart(start_exporter, engine: Engine, busybox: str, tmp_path: Path) -> None:
    # A second, private engine that this test may stop; the session's engine is left alone.
    state_dir = Path("/tmp") / f"dp-restart-{tmp_path.name[-6:]}"
    private = start_private_dockerd(state_dir)
    try:
        copy_image(busybox, engine, private)
        with closing(private.client()) as client:
            client.containers.run(
                busybox,
                ["sleep", "300"],
                name="survivor",
                detach=True,
                network_mode="none",
                restart_policy={"Name": "always"},
            )
        exporter = start_exporter(docker_host=private.host)
        wait_until(lambda: value(exporter.scrape(), "container_up", name="survivor") == 1)
        assert value(exporter.scrape(), "dockpulse_docker_up") == 1

        private.process.terminate()  # dockerd shuts down; containers stop with it
        private.process.wait(timeout=30)
        wait_until(lambda: value(exporter.scrape(), "dockpulse_docker_up") == 0, timeout=15)
        assert exporter.process.poll() is None

        private = start_private_dockerd(state_dir)
        wait_until(lambda: value(exporter.scrape(), "dockpulse_docker_up") == 1, timeout=30)
        wait_until(lambda: value(exporter.scrape(), "container_up", name="survivor") == 1)
        assert value(exporter.scrape(), "dockpulse_collect_errors_total") >= 1
    finally:
        private.stop()
        subprocess.run(["rm", "-rf", str(state_dir)], check=False)
