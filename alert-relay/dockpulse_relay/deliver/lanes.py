"""The deliver stage: two lanes, each a thread picking the most urgent due mail every time.

Critical mails (priority 0-1, and the relay's own "monitoring is blind") never wait behind a
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
from dataclasses import dataclass

from dockpulse_relay.config import RelayConfig
from dockpulse_relay.deliver.backends import AccountError, Backend, DeliveryError, PermanentError
from dockpulse_relay.metrics import RelayMetrics
from dockpulse_relay.model import BULK_PRIORITIES, URGENT_PRIORITIES, QueuedMail
from dockpulse_relay.store.base import Store, StoreError

log = logging.getLogger("dockpulse_relay.deliver")


@dataclass(frozen=True)
class Lane:
    name: str
    priorities: tuple[int, int]  # mails with a priority in this range (inclusive)


URGENT = Lane("urgent", URGENT_PRIORITIES)
BULK = Lane("bulk", BULK_PRIORITIES)
LANES = (URGENT, BULK)


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


class Delivery:
    """Sends queued mails through the backend (or the fallback), lane by lane."""

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
        self._wake = {lane.name: threading.Event() for lane in LANES}
        # Sent, but the store could not record it (disk full): never sent again for that.
        self._unrecorded: dict[int, float] = {}

    def wake(self, *lanes: Lane) -> None:
        """Look for due mails now (in every lane when none is named)."""
        for lane in lanes or LANES:
            self._wake[lane.name].set()

    def run(self, lane: Lane, stop: threading.Event) -> None:
        wake = self._wake[lane.name]
        while not stop.is_set():
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
            self.wake()
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
