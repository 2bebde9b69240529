"""The dispatcher: turns the buffer into mails and delivers them, most urgent first.

Planning (every `check_interval`, or at once when a critical alert arrives): buffered alerts ->
mails (digest and cooldown rules), committed in one transaction with the alerts marked as mailed
or held, so a crash leaves either the alerts buffered or the mail queued. Each mail is composed
on its own: one that cannot be composed is stored as a dead letter and the rest go on.

Planning runs in its own thread; delivery in two lanes, each a thread picking the most urgent
due mail every time:
critical mails (priority 0-1, and the relay's own "monitoring is blind") never wait behind a
backlog of digests or their retries. Failures, as the backend classifies them:
- transient (throttling, 5xx, network): retried with exponential backoff and jitter, forever;
- account (credentials, unverified sender, paused account): every queued mail stays queued and
  is retried every `retry_blocked_delay`; `dockpulse_relay_backend_blocked` says so;
- this message refused: dead-lettered (metric, alert, `dockpulse-relay dead-letters`).
With a fallback backend, mails go that way while the primary has failed for `fallback_after`.
A crash between sending and marking sent sends that mail again on restart (at least once).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, replace

from dockpulse_relay.backends import AccountError, Backend, DeliveryError, PermanentError
from dockpulse_relay.chart import (
    LEFT_OUT_FOR_CRITICAL,
    RENDER_ALLOWANCE_SECONDS,
    Chart,
    alert_charts,
)
from dockpulse_relay.config import RelayConfig
from dockpulse_relay.container_context import ContainerContext, ContextFetch
from dockpulse_relay.digest import MailPlan, plan_mails
from dockpulse_relay.heartbeat import heartbeat_mail, is_stale
from dockpulse_relay.message import compose, link_ready, uncomposable
from dockpulse_relay.metrics import RelayMetrics
from dockpulse_relay.store import (
    BLIND_NOTICE,
    NewMail,
    PlanConflict,
    QueuedMail,
    Store,
    StoreError,
)

log = logging.getLogger("dockpulse_relay.dispatch")

RETENTION_SECONDS = 7 * 24 * 3600  # how long sent alerts are remembered for dedup
PURGE_EVERY_SECONDS = 3600


@dataclass(frozen=True)
class Lane:
    name: str
    priorities: tuple[int, int]  # mails with a priority in this range (inclusive)


URGENT = Lane("urgent", (0, 1))
BULK = Lane("bulk", (2, 99))


def retry_delay(attempts: int, initial: float, maximum: float) -> float:
    """Exponential backoff with jitter: between half and all of initial * 2^(attempts-1)."""
    ceiling = min(maximum, initial * 2 ** max(attempts - 1, 0))
    return random.uniform(ceiling / 2, ceiling)


class BackendHealth:
    """Whether the primary backend works, as the last attempts tell."""

    def __init__(self, name: str, metrics: RelayMetrics) -> None:
        self.name = name
        self.metrics = metrics
        self.failing_since: float | None = None
        self._lock = threading.Lock()
        self._set(healthy=True, blocked=False)

    def _set(self, healthy: bool, blocked: bool) -> None:
        self.metrics.backend_healthy.labels(self.name).set(int(healthy))
        self.metrics.backend_blocked.labels(self.name).set(int(blocked))

    def worked(self) -> bool:
        """Record a success; True when it ends a run of failures."""
        with self._lock:
            recovered = self.failing_since is not None
            self.failing_since = None
            self._set(healthy=True, blocked=False)
            return recovered

    def failed(self, error: DeliveryError, now: float) -> None:
        with self._lock:
            if self.failing_since is None:
                self.failing_since = now
            self._set(healthy=False, blocked=isinstance(error, AccountError))

    def failing_for(self, now: float) -> float:
        with self._lock:
            return 0.0 if self.failing_since is None else now - self.failing_since


class Dispatcher:
    def __init__(
        self,
        store: Store,
        backend: Backend,
        config: RelayConfig,
        metrics: RelayMetrics,
        fallback: Backend | None = None,
    ) -> None:
        self.store = store
        self.backend = backend
        self.fallback = fallback
        self.config = config
        self.metrics = metrics
        self.health = BackendHealth(backend.name, metrics)
        self.started_at = time.time()
        self._wake_planner = threading.Event()
        self._wake = {URGENT.name: threading.Event(), BULK.name: threading.Event()}
        self._stop = threading.Event()
        self._last_purge = 0.0
        self._others_deferred = False  # the last pass left its non-critical mails for the next
        # Sent, but the store could not record it (disk full): never sent again for that.
        self._unrecorded: dict[int, float] = {}

    def wake(self) -> None:
        """Plan now (a critical alert arrived)."""
        self._wake_planner.set()

    def _wake_lanes(self, *lanes: Lane) -> None:
        for lane in lanes or (URGENT, BULK):
            self._wake[lane.name].set()

    def stop(self) -> None:
        self._stop.set()
        self._wake_planner.set()
        self._wake_lanes()

    def run(self) -> None:
        """The planner here; each delivery lane in a thread of its own, so a slow delivery
        attempt holds up neither planning nor the other lane."""
        for lane in (URGENT, BULK):
            threading.Thread(
                target=self._lane, args=(lane,), name=f"{lane.name}-lane", daemon=True
            ).start()
        while not self._stop.is_set():
            self._wake_planner.clear()
            try:
                self.housekeeping(time.time())
            except StoreError as exc:
                log.error("store unavailable: %s", exc)
            except Exception:
                log.exception("planning pass failed")
            self._wake_planner.wait(self.config.check_interval)

    def _lane(self, lane: Lane) -> None:
        wake = self._wake[lane.name]
        while not self._stop.is_set():
            wake.clear()
            timeout = self.config.check_interval
            try:
                if self.deliver_next(lane, time.time()):
                    continue  # at once: the next most urgent mail (or a new critical)
                timeout = self._next_wait(lane, time.time())
            except StoreError as exc:
                log.error("store unavailable: %s", exc)
            except Exception:
                log.exception("%s lane: pass failed", lane.name)
            wake.wait(timeout)

    def _next_wait(self, lane: Lane, now: float) -> float:
        wait = self.config.check_interval
        next_attempt = self.store.next_attempt_at(lane.priorities)
        if next_attempt is not None:
            wait = min(wait, max(next_attempt - now, 0.0))
        return wait

    def housekeeping(self, now: float) -> None:
        """Plan mails, watch the heartbeat, forget old history."""
        self.plan(now)
        self.check_heartbeat(now)
        if now - self._last_purge >= PURGE_EVERY_SECONDS:
            self.store.purge(now - RETENTION_SECONDS)
            self._last_purge = now

    def run_once(self, now: float) -> None:
        """One pass of everything: plan, then deliver every due mail (tests, benchmarks)."""
        self.housekeeping(now)
        for lane in (URGENT, BULK):
            while not self._stop.is_set() and self.deliver_next(lane, now):
                pass

    def plan(self, now: float) -> None:
        """Plan under the store's planner lease; another replica planning now does it for us."""
        with self.store.planning() as ours:
            if not ours:
                return
            try:
                self._plan(now)
            except PlanConflict as exc:
                log.warning("plan dropped (%s); planning again", exc)
                self._wake_planner.set()

    def _plan(self, now: float) -> None:
        config = self.config
        # From here on, a critical alert that comes in wakes the planner again: it cuts this
        # pass's digest graphs short (see below). One already stored is in `buffered`.
        self._wake_planner.clear()
        buffered = self.store.buffered(now, warnings_received_before=now - config.buffer_timeout)
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
        urgent = [item for item in plan.mails if item.priority <= URGENT.priorities[1]]
        others = [item for item in plan.mails if item.priority > URGENT.priorities[1]]
        suppressed = [alert_id for ids in plan.suppressed.values() for alert_id in ids]
        mails = self._compose_all(urgent, now, deadline)
        self.store.enqueue(mails, suppressed, now, plan.held)
        if mails:
            self._wake_lanes(URGENT)
        if others and self._wake_planner.is_set() and not self._others_deferred:
            self._others_deferred = True  # once: a stream of critical alerts never starves them
            log.info("a critical alert came in: %d other mails wait for the next pass", len(others))
        elif others:  # a crash before this commit leaves their alerts buffered: planned again
            self._others_deferred = False
            later = self._compose_all(others, now, deadline, cancel=self._wake_planner)
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
        self._wake_lanes()

    def _compose_all(
        self,
        plans: list[MailPlan],
        now: float,
        deadline: float,
        cancel: threading.Event | None = None,
    ) -> list[NewMail]:
        # Contexts are fetched alongside the graphs, within the same deadline.
        fetches = [self._start_contexts(plan, deadline) for plan in plans]
        charts = self._charts(plans, deadline, cancel)
        contexts = [fetch.collect(deadline, cancel) for fetch in fetches]
        return [
            mail
            for item, item_charts, item_contexts in zip(plans, charts, contexts, strict=True)
            for mail in self._compose(item, now, item_charts, item_contexts)
        ]

    def _start_contexts(self, plan: MailPlan, deadline: float) -> ContextFetch:
        """Start fetching each firing alert's container context (resolved ones get none)."""
        alerts = [
            link_ready(entry.alert) if entry.alert.status == "firing" else None
            for entry in plan.entries
        ]
        return ContextFetch.start(
            alerts,
            self.config.exporter_url,
            self.config.contexts_per_digest,
            timeout=max(deadline - time.monotonic(), 0.1),
            auth=self.config.exporter_auth,
        )

    def _charts(
        self, plans: list[MailPlan], deadline: float, cancel: threading.Event | None = None
    ) -> list[list[Chart | None]]:
        """Each firing alert's chart (None for the others), all by `deadline` (monotonic):
        Prometheus slow or down delays the mails by the budget at most, and is a reason in
        the mail. Once `cancel` is set, the graphs not drawn yet are left out. Never an
        error."""
        config = self.config
        found: list[list[Chart | None]] = []
        for plan in plans:
            charts: list[Chart | None] = [None] * len(plan.entries)
            firing = [
                index for index, entry in enumerate(plan.entries) if entry.alert.status == "firing"
            ]
            remaining = deadline - time.monotonic()
            if not firing:
                pass
            elif cancel is not None and cancel.is_set():
                for index in firing:
                    charts[index] = Chart(None, LEFT_OUT_FOR_CRITICAL)
            elif remaining < RENDER_ALLOWANCE_SECONDS + 0.1:
                spent = f"graph unavailable: the {config.chart_budget:g} s for graphs were spent"
                for index in firing:
                    charts[index] = Chart(None, spent)
            else:
                alerts = [link_ready(plan.entries[index].alert) for index in firing]
                try:
                    drawn = alert_charts(
                        config.prometheus_url,
                        alerts,
                        window=config.chart_window,
                        budget=remaining,
                        max_charts=config.charts_per_digest,
                        cancel=cancel,
                        auth=config.prometheus_auth,
                        verify=config.prometheus_verify,
                    )
                except Exception as exc:  # a chart is never worth a mail
                    log.exception("charts for a %s mail failed", plan.kind)
                    drawn = [Chart(None, f"graph unavailable: {type(exc).__name__}")] * len(alerts)
                for index, chart in zip(firing, drawn, strict=True):
                    charts[index] = chart
            found.append(charts)
        return found

    def _compose(
        self,
        plan: MailPlan,
        now: float,
        charts: list[Chart | None] | None = None,
        contexts: list[ContainerContext | None] | None = None,
    ) -> list[NewMail]:
        """The plan's mail; without its graphs and links if those cannot be composed; when
        even that fails, one per alert, so only the alert that breaks composing is
        dead-lettered."""
        config = self.config
        plain = (config.sender, config.recipients, config.prometheus_url, now)
        try:
            mail = compose(
                plan,
                *plain,
                charts=charts,
                grafana_url=config.grafana_url,
                chart_window=config.chart_window,
                contexts=contexts,
            )
            return [_with_priority(mail, plan.priority)]
        except Exception:
            log.exception("cannot compose a %s mail with graphs and links; without", plan.kind)
        try:
            mail = compose(plan, *plain, actionable=False)
            return [_with_priority(mail, plan.priority)]
        except Exception as exc:
            if len(plan.entries) == 1:
                log.exception("cannot compose a %s mail", plan.kind)
                return [_with_priority(uncomposable(plan, repr(exc), now), plan.priority)]
        found = []
        for index, entry in enumerate(plan.entries):
            single = MailPlan(plan.kind, plan.severity, plan.resolved, [entry])
            found += self._compose(
                single,
                now,
                [charts[index]] if charts else None,
                [contexts[index]] if contexts else None,
            )
        return found

    def check_heartbeat(self, now: float) -> None:
        """Mail "monitoring is blind" when the Watchdog heartbeat stops, again every
        BLIND_REPEAT while it stays away, and "monitoring is back" when it returns (watched from
        the first heartbeat on)."""
        heartbeat = self.store.heartbeat()
        if heartbeat is None:
            return
        stale = is_stale(heartbeat, now, self.started_at, self.config.heartbeat_timeout)
        self.metrics.blind.set(int(heartbeat.blind))
        if stale and heartbeat.blind:
            repeat = heartbeat_mail(heartbeat, True, now, self.config)
            if self.store.send_notice(BLIND_NOTICE, repeat, now, self.config.blind_repeat):
                log.warning("queued again: %s", repeat.subject)
                self._wake_lanes(URGENT)
            return
        if stale == heartbeat.blind:
            return
        mail = heartbeat_mail(heartbeat, stale, now, self.config)
        self.metrics.blind.set(int(stale))
        if not self.store.set_blind(stale, mail, now):
            return  # another replica queued it
        log.warning("queued %s", mail.subject)
        self._wake_lanes(URGENT)

    def deliver_next(self, lane: Lane, now: float) -> bool:
        """Deliver the most urgent mail due in `lane`; False when none is due."""
        mail = self.store.next_due(now, lane.priorities)
        if mail is None:
            return False
        if mail.id in self._unrecorded:
            self.store.mark_sent(mail.id, self._unrecorded[mail.id])
            self._unrecorded.pop(mail.id, None)
            return True
        self.deliver(mail)
        return True

    def deliver(self, mail: QueuedMail) -> None:
        try:
            self.backend.send(mail.message_id, mail.message)
        except PermanentError as exc:
            self.health.worked()  # the backend answered; this one message is the problem
            self._dead_letter(mail, str(exc))
            return
        except DeliveryError as exc:
            now = time.time()
            self.health.failed(exc, now)
            if self._try_fallback(mail, now):
                return
            self._retry_later(mail, exc, now)
            return
        if self.health.worked():
            self.store.retry_all_now(time.time())  # it works again: no mail waits its backoff
            self._wake_lanes()
        self._sent(mail, self.backend.name)

    def _try_fallback(self, mail: QueuedMail, now: float) -> bool:
        if self.fallback is None or self.health.failing_for(now) < self.config.fallback_after:
            return False
        try:
            self.fallback.send(mail.message_id, mail.message)
        except DeliveryError as exc:
            log.warning("fallback %s failed too for %s: %s", self.fallback.name, mail.id, exc)
            return False
        self._sent(mail, self.fallback.name)
        return True

    def _retry_later(self, mail: QueuedMail, exc: DeliveryError, now: float) -> None:
        backend = self.backend.name
        if isinstance(exc, AccountError):
            delay = self.config.retry_blocked_delay
            reason = "account"
        else:
            delay = retry_delay(
                mail.attempts + 1, self.config.retry_initial_delay, self.config.retry_max_delay
            )
            reason = "transient"
        self.store.mark_retry(mail.id, now + delay, str(exc))
        self.metrics.failed.labels(backend, reason).inc()
        log.warning("mail %s failed (%s: %s); retry in %.1fs", mail.message_id, reason, exc, delay)

    def _sent(self, mail: QueuedMail, backend: str) -> None:
        sent_at = time.time()
        self._unrecorded[mail.id] = sent_at
        self.store.mark_sent(mail.id, sent_at)  # StoreError: recorded on a later pass
        self._unrecorded.pop(mail.id, None)
        self.metrics.sent.labels(mail.kind, backend).inc()
        self.metrics.delivery_latency.labels(mail.kind).observe(
            max(sent_at - mail.first_received_at, 0.0)
        )
        log.info("sent %s mail %s via %s", mail.kind, mail.message_id, backend)

    def _dead_letter(self, mail: QueuedMail, error: str) -> None:
        self.store.mark_dead(mail.id, error)
        self.metrics.dead_lettered.labels(self.backend.name).inc()
        log.error("dead-lettered mail %s (%s): %s", mail.message_id, mail.subject, error)


def _with_priority(mail: NewMail, priority: int) -> NewMail:
    return replace(mail, priority=priority)
