"""The plan stage's loop: every `check_interval`, or at once when a critical alert arrives,
turn the buffer into mails under the store's planner lease, watch the heartbeat, forget old
history.

A pass reads the buffer, applies the rules (`rules.plan_mails`), has the mails composed and
commits them in one transaction with their alerts marked as mailed or held, so a crash leaves
either the alerts buffered or the mail queued. Critical mails are committed before the others'
graphs are fetched: a digest never delays them (see `_plan`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from dockpulse_relay.compose.composer import Composer
from dockpulse_relay.compose.notices import heartbeat_mail
from dockpulse_relay.config import RelayConfig
from dockpulse_relay.metrics import RelayMetrics
from dockpulse_relay.model import URGENT_PRIORITIES
from dockpulse_relay.plan.heartbeat import is_stale, last_sign_of_life
from dockpulse_relay.plan.rules import plan_mails, warnings_cutoff
from dockpulse_relay.store.base import BLIND_NOTICE, PlanConflict, Store, StoreError

log = logging.getLogger("dockpulse_relay.plan")

RETENTION_SECONDS = 7 * 24 * 3600  # how long sent alerts are remembered for dedup
PURGE_EVERY_SECONDS = 3600


class Planner:
    """Plans mails; `queued(urgent)` is called when it has queued some (wakes the lanes)."""

    def __init__(
        self,
        store: Store,
        composer: Composer,
        config: RelayConfig,
        metrics: RelayMetrics,
        queued: Callable[[bool], None],
    ) -> None:
        self.store = store
        self.composer = composer
        self.config = config
        self.metrics = metrics
        self.queued = queued
        self.started_at = time.time()
        self.woken = threading.Event()  # a critical alert arrived: plan now
        self._last_purge = 0.0
        self._others_deferred = False  # the last pass left its non-critical mails for the next

    def housekeeping(self, now: float) -> None:
        """Plan mails, watch the heartbeat, forget old history."""
        self.plan(now)
        self.check_heartbeat(now)
        if now - self._last_purge >= PURGE_EVERY_SECONDS:
            self.store.purge(now - RETENTION_SECONDS)
            self._last_purge = now

    def plan(self, now: float) -> None:
        """Plan under the store's planner lease; another replica planning now does it for us."""
        with self.store.planning() as ours:
            if not ours:
                return
            try:
                self._plan(now)
            except PlanConflict as exc:
                log.warning("plan dropped (%s); planning again", exc)
                self.woken.set()

    def _plan(self, now: float) -> None:
        config = self.config
        # From here on, a critical alert that comes in wakes the planner again: it cuts this
        # pass's digest graphs short (see below). One already stored is in `buffered`.
        self.woken.clear()
        cutoff = warnings_cutoff(now, config.buffer_timeout)
        buffered = self.store.buffered(now, warnings_received_before=cutoff)
        if not buffered:
            return
        plan = plan_mails(
            buffered,
            self.store.cooldowns(item.alert.fingerprint for item in buffered),
            now,
            buffer_timeout=config.buffer_timeout,
            alert_cooldown=config.alert_cooldown,
            send_resolved=config.send_resolved,
            digest_max_alerts=config.digest_max_alerts,
        )
        already_held = {item.id for item in buffered if item.held}
        newly_held = [alert_id for alert_id in plan.held if alert_id not in already_held]
        if not plan.mails and not plan.suppressed and not newly_held:
            return
        # Graphs are fetched before the store is written (no transaction held meanwhile), all
        # of this pass's within one budget; critical mails are queued before the others' graphs
        # are fetched, so a digest's graphs never delay them. Nor do they delay a critical alert
        # that comes in meanwhile: when one has arrived before the others' graphs are started,
        # the others wait for the next pass, still buffered (once); when one arrives while they are
        # fetched, the graphs not drawn yet are left out (the mail says so) and the others go.
        # So a critical alert waits for at most one budget: its own graphs.
        deadline = time.monotonic() + config.chart_budget
        urgent = [item for item in plan.mails if item.priority <= URGENT_PRIORITIES[1]]
        others = [item for item in plan.mails if item.priority > URGENT_PRIORITIES[1]]
        suppressed = [alert_id for ids in plan.suppressed.values() for alert_id in ids]
        mails = self.composer.compose_all(urgent, now, deadline)
        self.store.enqueue(mails, suppressed, now, plan.held)
        if mails:
            self.queued(True)
        if others and self.woken.is_set() and not self._others_deferred:
            self._others_deferred = True  # once: a stream of critical alerts never starves them
            log.info("a critical alert came in: %d other mails wait for the next pass", len(others))
        elif others:  # a crash before this commit leaves their alerts buffered: planned again
            self._others_deferred = False
            later = self.composer.compose_all(others, now, deadline, cancel=self.woken)
            self.store.enqueue(later, [], now)
            mails += later
        for reason, ids in plan.suppressed.items():
            self.metrics.suppressed.labels(reason).inc(len(ids))
        self.metrics.held.inc(len(newly_held))
        for mail in mails:
            if mail.error:
                self.metrics.dead_lettered.labels("compose").inc()
                log.error("dead-lettered %s mail %s: %s", mail.kind, mail.message_id, mail.error)
            else:
                log.info("queued %s mail %s: %s", mail.kind, mail.message_id, mail.subject)
        self.queued(False)

    def check_heartbeat(self, now: float) -> None:
        """Mail "monitoring is blind" when the Watchdog heartbeat stops, again every
        BLIND_REPEAT while it stays away, and "monitoring is back" when it returns (watched from
        the first heartbeat on)."""
        heartbeat = self.store.heartbeat()
        if heartbeat is None:
            return
        stale = is_stale(heartbeat, now, self.started_at, self.config.heartbeat_timeout)
        self.metrics.blind.set(int(heartbeat.blind))
        since = last_sign_of_life(heartbeat)
        if stale and heartbeat.blind:
            repeat = heartbeat_mail(since, True, now, self.config)
            if self.store.send_notice(BLIND_NOTICE, repeat, now, self.config.blind_repeat):
                log.warning("queued again: %s", repeat.subject)
                self.queued(True)
            return
        if stale == heartbeat.blind:
            return
        mail = heartbeat_mail(since, stale, now, self.config)
        self.metrics.blind.set(int(stale))
        if not self.store.set_blind(stale, mail, now):
            return  # another replica queued it
        log.warning("queued %s", mail.subject)
        self.queued(True)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.woken.clear()
            try:
                self.housekeeping(time.time())
            except StoreError as exc:
                log.error("store unavailable: %s", exc)
            except Exception:
                log.exception("planning pass failed")
            self.woken.wait(self.config.check_interval)
