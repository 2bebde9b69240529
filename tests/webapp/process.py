"""Run the real `dockpulse-webapp` (gunicorn) as a subprocess, for the webapp and load tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from testkit.helpers import free_port, wait_until
from testkit.local_stack import stop_process

BIN = Path(sys.executable).parent


@contextmanager
def webapp_process(database_url: str, port: int | None = None, **settings: str) -> Iterator[str]:
    """The app on `port` (default: a free one) with `settings` as WEBAPP_* variables; yields its
    base URL."""
    port = port or free_port()
    env = {**os.environ, "DATABASE_URL": database_url}
    env.update({f"WEBAPP_{key.upper()}": value for key, value in settings.items()})
    command = [str(BIN / "dockpulse-webapp"), f"--web.listen-address=127.0.0.1:{port}"]
    process = subprocess.Popen([*command, "--log.level=warning"], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(f"{url}/", timeout=2).ok, timeout=20)
        yield url
    finally:
        stop_process(process, timeout=15)
