"""The dispatcher thread: turns the buffer into mails and delivers them, with retries.

Each pass (every `check_interval`, or at once when a critical alert arrives):
1. plan: buffered alerts -> mails (digest rules), committed in one transaction with the
   alerts marked as mailed, so a crash leaves either the alerts buffered or the mail queued;
2. deliver every due mail; success marks it sent, a transient error schedules a retry with
   exponential backoff and jitter, a permanent one (or too many attempts) dead-letters it.
A crash between sending and marking sent sends that mail again on restart; the outbox backend
rewrites the same file, so there it is exactly once.
"""

from __future__ import annotations

import logging
import random
import threading
import time

from dockpulse_relay.backends import Backend, PermanentError, TransientError
from dockpulse_relay.compose import compose
from dockpulse_relay.config import RelayConfig
from dockpulse_relay.digest import plan_mails
from dockpulse_relay.metrics import RelayMetrics
from dockpulse_relay.store import QueuedMail, Store, StoreError

log = logging.getLogger("dockpulse_relay.dispatch")

RETENTION_SECONDS = 7 * 24 * 3600  # how long sent alerts are remembered for dedup
PURGE_EVERY_SECONDS = 3600


def retry_delay(attempts: int, initial: float, maximum: float) -> float:
    """Exponential backoff with jitter: between half and all of initial * 2^(attempts-1)."""
    ceiling = min(maximum, initial * 2 ** max(attempts - 1, 0))
    return random.uniform(ceiling / 2, ceiling)


class Dispatcher:
    def __init__(
        self, store: Store, backend: Backend, config: RelayConfig, metrics: RelayMetrics
    ) -> None:
        self.store = store
        self.backend = backend
        self.config = config
        self.metrics = metrics
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._last_purge = 0.0

    def wake(self) -> None:
        """Run a pass now (a critical alert arrived)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.run_once(time.time())
                timeout = self._next_wait(time.time())
            except StoreError as exc:
                log.error("store unavailable: %s", exc)
                timeout = self.config.check_interval
            except Exception:
                log.exception("dispatch pass failed")
                timeout = self.config.check_interval
            self._wake.wait(timeout)

    def _next_wait(self, now: float) -> float:
        wait = self.config.check_interval
        next_attempt = self.store.next_attempt_at()
        if next_attempt is not None:
            wait = min(wait, max(next_attempt - now, 0.0))
        return wait

    def run_once(self, now: float) -> None:
        self.plan(now)
        for mail in self.store.due_mails(now):
            if self._stop.is_set():
                return
            self.deliver(mail)
        if now - self._last_purge >= PURGE_EVERY_SECONDS:
            self.store.purge(now - RETENTION_SECONDS)
            self._last_purge = now

    def plan(self, now: float) -> None:
        config = self.config
        buffered = self.store.buffered(warnings_received_before=now - config.buffer_timeout)
        if not buffered:
            return
        keys = [(item.alert.fingerprint, item.alert.status) for item in buffered]
        plan = plan_mails(
            buffered,
            self.store.last_mailed(keys),
            now,
            buffer_timeout=config.buffer_timeout,
            alert_cooldown=config.alert_cooldown,
            send_resolved=config.send_resolved,
            digest_max_alerts=config.digest_max_alerts,
        )
        if not plan.mails and not plan.suppressed:
            return
        mails = [
            compose(item, config.sender, config.recipients, config.prometheus_url, now)
            for item in plan.mails
        ]
        suppressed = [alert_id for ids in plan.suppressed.values() for alert_id in ids]
        self.store.enqueue(mails, suppressed, now)
        for reason, ids in plan.suppressed.items():
            self.metrics.suppressed.labels(reason).inc(len(ids))
        for mail in mails:
            log.info("queued %s mail %s: %s", mail.kind, mail.message_id, mail.subject)

    def deliver(self, mail: QueuedMail) -> None:
        backend = self.backend.name
        attempts = mail.attempts + 1
        try:
            self.backend.send(mail.message_id, mail.message)
        except PermanentError as exc:
            self._dead_letter(mail, str(exc))
            return
        except TransientError as exc:
            if attempts >= self.config.retry_max_attempts:
                self._dead_letter(mail, f"gave up after {attempts} attempts: {exc}")
                return
            delay = retry_delay(
                attempts, self.config.retry_initial_delay, self.config.retry_max_delay
            )
            self.store.mark_retry(mail.id, time.time() + delay, str(exc))
            self.metrics.failed.labels(backend).inc()
            log.warning("mail %s failed (%s); retry in %.1fs", mail.message_id, exc, delay)
            return
        sent_at = time.time()
        self.store.mark_sent(mail.id, sent_at)
        self.metrics.sent.labels(mail.kind, backend).inc()
        self.metrics.delivery_latency.labels(mail.kind).observe(
            max(sent_at - mail.first_received_at, 0.0)
        )
        log.info("sent %s mail %s via %s", mail.kind, mail.message_id, backend)

    def _dead_letter(self, mail: QueuedMail, error: str) -> None:
        self.store.mark_dead(mail.id, error)
        self.metrics.dead_lettered.labels(self.backend.name).inc()
        log.error("dead-lettered mail %s (%s): %s", mail.message_id, mail.subject, error)
