"""One `dockpulse-relay` as a real subprocess on a free port, with its folder (store, outbox,
alert log): for the relay's tests and the chaos benchmark."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import requests

from testkit.helpers import Samples, free_port, scrape, wait_until
from testkit.mail import outbox_messages

RELAY = Path(sys.executable).with_name("dockpulse-relay")
TOKEN = "test-token"


class RelayProcess:
    """One `dockpulse-relay` process; `restart()` keeps the folder (store, outbox, log)."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        self.port = free_port()
        self.env = {
            **os.environ,
            "RELAY_AUTH_TOKEN": TOKEN,
            "RELAY_STORE": str(folder / "relay.db"),
            "OUTBOX_DIR": str(folder / "outbox"),
            "ALERT_LOG": str(folder / "logs" / "container_alerts.log"),
            "BUFFER_TIMEOUT": "1",
            "CHECK_INTERVAL": "0.2",
            "ALERT_COOLDOWN": "0.1",
            "ALERTMANAGER_URL": "",  # silences not watched unless a test says where
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RelayProcess:
        log = (self.folder / "relay.out").open("ab")
        self.process = subprocess.Popen(
            [str(RELAY), f"--web.listen-address=127.0.0.1:{self.port}"],
            env=self.env,
            cwd=self.folder,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._answers, timeout=20, interval=0.05)
        return self

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"relay exited: {self.output()}")
        return requests.get(f"{self.url}/healthz", timeout=2).status_code in (200, 503)

    def output(self) -> str:
        return (self.folder / "relay.out").read_text(errors="replace")

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
        self, payload: object, token: str | None = TOKEN, path: str = "/webhook"
    ) -> requests.Response:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return requests.post(f"{self.url}{path}", data=body, headers=headers, timeout=10)

    def metrics(self) -> Samples:
        return scrape(f"{self.url}/metrics")

    def mails(self) -> list[EmailMessage]:
        """The outbox, in the order the mails were written."""
        return outbox_messages(self.folder / "outbox")

    def alert_log(self) -> list[dict[str, object]]:
        path = self.folder / "logs" / "container_alerts.log"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
