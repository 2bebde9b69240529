"""Reading Alertmanager's silences every SILENCE_CHECK_INTERVAL and queueing the warnings that
`silences.py` finds due (the I/O edge: HTTP with basic auth, the store, its own thread)."""

from __future__ import annotations

import logging
import threading
import time

import requests

from dockpulse_relay.config import RelayConfig
from dockpulse_relay.metrics import RelayMetrics
from dockpulse_relay.plan.silences import warnings_due
from dockpulse_relay.store.base import Store, StoreError

log = logging.getLogger("dockpulse_relay.silences")
READ_TIMEOUT_SECONDS = 10.0


class SilenceWatcher:
    """Queues one warning per broad or long silence; `check` is one pass (tests call it)."""

    def __init__(self, config: RelayConfig, store: Store, metrics: RelayMetrics) -> None:
        if config.alertmanager_url is None:
            raise ValueError("alertmanager_url: not set, silences cannot be watched")
        self.url = config.alertmanager_url
        self.config = config
        self.store = store
        self.metrics = metrics
        self._stop = threading.Event()
        self._failing = False

    def check(self, now: float) -> int:
        """Read the silences and queue the warnings not sent yet; how many were queued."""
        answer = requests.get(
            f"{self.url}/api/v2/silences",
            auth=self.config.alertmanager_auth(),
            timeout=READ_TIMEOUT_SECONDS,
        )
        answer.raise_for_status()
        queued = 0
        for key, mail in warnings_due(answer.json(), now, self.config, self.url):
            if self.store.send_notice(key, mail, now):
                log.warning("queued: %s (%s)", mail.subject, key)
                self.metrics.silence_warnings.inc()
                queued += 1
        return queued

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check(time.time())
                self.metrics.silences_up.set(1)
                if self._failing:
                    log.info("reading Alertmanager's silences at %s again", self.url)
                self._failing = False
            except (requests.RequestException, ValueError, StoreError) as exc:
                self.metrics.silences_up.set(0)
                if not self._failing:
                    log.warning("cannot read Alertmanager's silences at %s: %s", self.url, exc)
                self._failing = True
            self._stop.wait(self.config.silence_check_interval)

    def stop(self) -> None:
        self._stop.set()
