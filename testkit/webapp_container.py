"""The demo webapp as a real container from the local image, on the host network.

For tests and benchmarks that watch a container fail: it listens on 127.0.0.1:`port`, talks to
the database at `database_url`, and can be killed, started again and removed.
"""

from __future__ import annotations

import time
from contextlib import closing, suppress
from dataclasses import dataclass, field

import docker
import requests

from dockpulse_stack.engine import Engine
from dockpulse_stack.images import WEBAPP, build_local_image
from testkit.helpers import free_port
from testkit.local_stack import LocalStackError

# Compose would label the demo's webapp so; the shipped probe "webapp" then names this container.
COMPOSE_SERVICE_LABEL = "com.docker.compose.service"


def webapp_image(engine: Engine) -> str:
    """dockpulse/webapp:local, rebuilt from Docker's layer cache so code changes are in it."""
    return build_local_image(engine, WEBAPP)


@dataclass
class WebappContainer:
    engine: Engine
    name: str
    database_url: str
    labels: dict[str, str] = field(default_factory=dict)
    compose_service: str | None = "webapp"  # None: not claimed by the probe "webapp"
    port: int = field(default_factory=free_port)
    health_interval: float | None = None  # seconds between Docker health checks; None: image's

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def run(self, image: str, timeout: float = 60.0) -> WebappContainer:
        """Create and start the container; wait until /health answers 200."""
        with closing(self.engine.client()) as client:
            client.containers.run(
                image,
                [f"--web.listen-address=127.0.0.1:{self.port}"],
                name=self.name,
                detach=True,
                network_mode="host",
                environment={"DATABASE_URL": self.database_url},
                labels={**self.compose_labels(), **self.labels},
                healthcheck=self.healthcheck(),
            )
        self.wait_healthy(timeout)
        return self

    def healthcheck(self) -> dict[str, int] | None:
        """The image's health check, checked every `health_interval` (also its start period)."""
        if self.health_interval is None:
            return None
        nanoseconds = int(self.health_interval * 1e9)
        return {"interval": nanoseconds, "start_period": nanoseconds}

    def compose_labels(self) -> dict[str, str]:
        return {COMPOSE_SERVICE_LABEL: self.compose_service} if self.compose_service else {}

    def healthy(self) -> bool:
        try:
            return requests.get(f"{self.url}/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if time.monotonic() > deadline:
                raise LocalStackError(f"{self.name}: /health not 200 within {timeout:.0f}s")
            time.sleep(0.2)

    def kill(self) -> None:
        with closing(self.engine.client()) as client:
            client.containers.get(self.name).kill()

    def start(self, timeout: float = 60.0) -> None:
        """Start the stopped container again; wait until /health answers 200."""
        with closing(self.engine.client()) as client:
            client.containers.get(self.name).start()
        self.wait_healthy(timeout)

    def remove(self) -> None:
        with closing(self.engine.client()) as client, suppress(docker.errors.NotFound):
            client.containers.get(self.name).remove(force=True)
