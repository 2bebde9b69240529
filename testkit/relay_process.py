"""One `dockpulse-relay` as a real subprocess on a free port, with its folder (store, outbox,
alert log): for the relay's tests, the chaos benchmark and `LocalStack.relay`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from email.message import EmailMessage
from pathlib import Path
from types import EllipsisType

import requests

from testkit.helpers import Samples, free_port, scrape, wait_until
from testkit.mail import outbox_messages

RELAY = Path(sys.executable).with_name("dockpulse-relay")
TOKEN = "test-token"
# The relay's tests' timings: a warning waits 1 s in the buffer, the dispatcher looks 5 times a
# second, and the same alert may be mailed again after 0.1 s.
FAST_TIMINGS = {"BUFFER_TIMEOUT": "1", "CHECK_INTERVAL": "0.2", "ALERT_COOLDOWN": "0.1"}


class RelayProcess:
    """One `dockpulse-relay` process; `restart()` keeps the folder (store, outbox, log).

    The defaults are the relay's tests': bearer token TOKEN, FAST_TIMINGS, and ready when
    /healthz answers 200 or 503 (a store that cannot be written yet). `LocalStack.relay` passes
    the stack's token, no timings and `ready_statuses=(200,)`. `env` overrides every setting.
    """

    def __init__(
        self,
        folder: Path,
        env: Mapping[str, str],
        *,
        name: str | None = None,
        token: str = TOKEN,
        timings: Mapping[str, str] = FAST_TIMINGS,
        ready_statuses: tuple[int, ...] = (200, 503),
        ready_timeout: float = 20.0,
    ) -> None:
        self.folder = folder
        self.name = name or folder.name
        self.token = token
        self.ready_statuses = ready_statuses
        self.ready_timeout = ready_timeout
        self.port = free_port()
        self.env = {
            **os.environ,
            "RELAY_AUTH_TOKEN": token,
            "RELAY_STORE": str(folder / "relay.db"),
            "OUTBOX_DIR": str(folder / "outbox"),
            "ALERT_LOG": str(folder / "logs" / "container_alerts.log"),
            **timings,
            "ALERTMANAGER_URL": "",  # silences not watched unless a test says where
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        """Its stdout and stderr, every start appended."""
        return self.folder / "relay.out"

    @property
    def outbox(self) -> Path:
        """OUTBOX_DIR: with the outbox backend, every mail a .eml file there."""
        return Path(self.env["OUTBOX_DIR"])

    @property
    def alert_log_path(self) -> Path:
        """ALERT_LOG: a JSON line for every alert received (see `alert_log_entries`)."""
        return Path(self.env["ALERT_LOG"])

    def start(self) -> RelayProcess:
        """Start it and wait until /healthz answers one of `ready_statuses`."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(RELAY), f"--web.listen-address=127.0.0.1:{self.port}"],
                env=self.env,
                cwd=self.folder,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._answers, timeout=self.ready_timeout, interval=0.05)
        return self

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited: {self.output()}")
        return requests.get(f"{self.url}/healthz", timeout=2).status_code in self.ready_statuses

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """kill -9: no chance to flush or clean up."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self, **env: str) -> RelayProcess:
        self.kill()
        self.env.update(env)
        return self.start()

    def post(
        self,
        payload: object,
        token: str | EllipsisType | None = ...,
        path: str = "/webhook",
    ) -> requests.Response:
        """POST `payload` (bytes, or JSON) with `token` as bearer token: by default its own,
        None for no Authorization header."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        bearer = self.token if token is ... else token
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        return requests.post(f"{self.url}{path}", data=body, headers=headers, timeout=10)

    def metrics(self) -> Samples:
        return scrape(f"{self.url}/metrics")

    def mails(self) -> list[EmailMessage]:
        """The outbox, in the order the mails were written."""
        return outbox_messages(self.outbox)

    def alert_log_entries(self) -> list[dict[str, object]]:
        """The alert log's lines, parsed; none before the first alert."""
        path = self.alert_log_path
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
