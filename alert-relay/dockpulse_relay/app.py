"""The relay, wired: intake -> store -> plan -> compose -> deliver.

    webhook (intake/)  --record-->  store (store/)  <--plan, enqueue--  Planner (plan/)
                                                                          | compose_all
                                                                       Composer (compose/)
    backends (deliver/)  <--send--  Delivery lanes (deliver/)  --next_due, mark_*-->  store

The webhook stores an alert durably and wakes the planner for a critical one; the planner turns
the buffer into mails (composed by the composer) and wakes the lanes; each lane sends the most
urgent due mail. The silence watcher and the heartbeat check queue the relay's own notices.
"""

from __future__ import annotations

import sys
import threading

from dockpulse.settings import split_listen_address
from dockpulse.web_config import load_web_config
from dockpulse_relay.compose.composer import Composer
from dockpulse_relay.config import RelayConfig
from dockpulse_relay.deliver.backends import Backend, make_backend
from dockpulse_relay.deliver.lanes import LANES, URGENT, Delivery
from dockpulse_relay.intake.alert_log import AlertLog
from dockpulse_relay.intake.webhook import Webhook, make_server
from dockpulse_relay.metrics import RelayMetrics
from dockpulse_relay.plan.planner import Planner
from dockpulse_relay.plan.silence_watch import SilenceWatcher
from dockpulse_relay.store.base import Store
from dockpulse_relay.store.open import open_store

SWITCH_INTERVAL_SECONDS = 0.001


class Dispatcher:
    """The planner and the delivery lanes over one store: what turns stored alerts into sent
    mails. `run` runs them in threads; `run_once` is one synchronous pass (tests, benches)."""

    def __init__(
        self,
        store: Store,
        backend: Backend,
        config: RelayConfig,
        metrics: RelayMetrics,
        fallback: Backend | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.delivery = Delivery(store, backend, config, metrics, fallback)
        self.planner = Planner(store, Composer(config), config, metrics, self._queued)
        self._stop = threading.Event()

    def _queued(self, urgent: bool) -> None:
        if urgent:
            self.delivery.wake(URGENT)
        else:
            self.delivery.wake()

    def wake(self) -> None:
        """Plan now (a critical alert arrived)."""
        self.planner.woken.set()

    def run(self) -> None:
        """The planner here; each delivery lane in a thread of its own, so a slow delivery
        attempt holds up neither planning nor the other lane."""
        for lane in LANES:
            threading.Thread(
                target=self.delivery.run,
                args=(lane, self._stop),
                name=f"{lane.name}-lane",
                daemon=True,
            ).start()
        self.planner.run(self._stop)

    def run_once(self, now: float) -> None:
        """One pass of everything: plan, then deliver every due mail."""
        self.planner.housekeeping(now)
        for lane in LANES:
            while not self._stop.is_set() and self.delivery.deliver_next(lane, now):
                pass

    def stop(self) -> None:
        self._stop.set()
        self.planner.woken.set()
        self.delivery.wake()


class Relay:
    """The running relay: the webhook server and the dispatcher threads over one store."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.host, self.port = split_listen_address(config.listen_address)
        self.store = open_store(config.store, config.store_sync, config.lease)
        self.metrics = RelayMetrics(
            self.store.depth, self.store.oldest_pending_created_at, self._heartbeat_at
        )
        fallback = (
            make_backend(config, config.mail_fallback_backend)
            if config.mail_fallback_backend
            else None
        )
        self.dispatcher = Dispatcher(
            self.store, make_backend(config), config, self.metrics, fallback
        )
        self.silences = (
            SilenceWatcher(config, self.store, self.metrics) if config.alertmanager_url else None
        )
        token = config.auth_token.get_secret_value() if config.auth_token else None
        self.alert_log = AlertLog(config.alert_log)
        webhook = Webhook(
            self.store,
            self.alert_log,
            self.metrics,
            self.dispatcher.wake,
            token,
            config.max_body_bytes,
        )
        self.server = make_server(
            self.host,
            self.port,
            webhook,
            self.metrics,
            self.store,
            config.max_connections,
            config.read_timeout,
            load_web_config(config.web_config_file),
        )

    def _heartbeat_at(self) -> float | None:
        heartbeat = self.store.heartbeat()
        return None if heartbeat is None else heartbeat.received_at

    def serve_forever(self) -> None:
        # Webhook threads wait less for the GIL while the dispatcher composes a big digest.
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        threading.Thread(target=self.dispatcher.run, name="planner", daemon=True).start()
        if self.silences is not None:
            threading.Thread(target=self.silences.run, name="silences", daemon=True).start()
        self.server.serve_forever()

    def stop(self) -> None:
        self.dispatcher.stop()
        if self.silences is not None:
            self.silences.stop()
        self.server.shutdown()
