"""What every stage may rely on from a store, whichever database holds it: the errors, the
`Store` protocol the stages are written against, and `SqlBase`, the connection-level part both
SQL stores share (transactions, leases renewed while held, queue depth for the metrics)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from dockpulse_relay.model import (
    Alert,
    BufferedAlert,
    Cooldown,
    DeadLetter,
    Heartbeat,
    NewMail,
    QueuedMail,
)

DEFAULT_LEASE_SECONDS = 5.0
PLANNER = "planner"
BLIND_NOTICE = "blind"  # the notice row holding when "monitoring is blind" was last queued


class StoreError(RuntimeError):
    """The store cannot be read or written (disk full, read-only, database down...)."""


class PlanConflict(RuntimeError):
    """Another replica planned some of these alerts first: this plan was rolled back."""


class Store(Protocol):
    """What the webhook, the dispatcher, the metrics and the CLI need from a store."""

    def check(self) -> None: ...
    def record(self, alerts: Iterable[Alert], now: float) -> list[bool]: ...
    def planning(self) -> AbstractContextManager[bool]: ...
    def buffered(self, now: float, warnings_received_before: float) -> list[BufferedAlert]: ...
    def cooldowns(self, fingerprints: Iterable[str]) -> dict[str, Cooldown]: ...
    def enqueue(
        self,
        mails: list[NewMail],
        suppressed: list[int],
        now: float,
        held: dict[int, float] | None = None,
    ) -> None: ...
    def add_mail(self, mail: NewMail, now: float) -> None: ...
    def next_due(self, now: float, priorities: tuple[int, int]) -> QueuedMail | None: ...
    def next_attempt_at(self, priorities: tuple[int, int] = (0, 99)) -> float | None: ...
    def oldest_pending_created_at(self) -> float | None: ...
    def mark_sent(self, mail_id: int, now: float) -> None: ...
    def mark_retry(self, mail_id: int, next_attempt_at: float, error: str) -> None: ...
    def retry_all_now(self, now: float) -> None: ...
    def mark_dead(self, mail_id: int, error: str) -> None: ...
    def dead_letters(self) -> list[DeadLetter]: ...
    def requeue(self, mail_ids: Iterable[int] | None, now: float) -> int: ...
    def heartbeat(self) -> Heartbeat | None: ...
    def record_heartbeat(self, received_at: float, evaluated_at: float | None) -> None: ...
    def set_blind(self, blind: bool, mail: NewMail, now: float) -> bool: ...
    def send_notice(
        self, key: str, mail: NewMail, now: float, repeat_after: float | None = None
    ) -> bool: ...
    def depth(self) -> dict[str, int]: ...
    def purge(self, before: float) -> None: ...
    def close(self) -> None: ...


class Transaction(Protocol):
    """A DB-API connection or cursor in a transaction; SQL uses `?` placeholders."""

    def execute(self, sql: str, parameters: Any = ...) -> Any: ...


class SqlBase:
    """The store's connection side, in SQL both SQLite and PostgreSQL run. A subclass opens
    transactions (`_transaction`) and says how its database writes the time now and a row lock;
    the queries are grouped by the stage that calls them (`intake`, `planning`, `delivery`)."""

    NOW_SQL: str  # the database's clock, in seconds since the epoch
    LOCK_ROWS: str = ""  # appended to a claiming SELECT: "FOR UPDATE SKIP LOCKED" when shared
    shared = False  # True: other processes use the same store (leases must be renewed)

    def __init__(self, lease: float = DEFAULT_LEASE_SECONDS, holder: str = "relay") -> None:
        self.lease = lease
        self.holder = holder  # who claims mails and leases: one name per process
        self._renewing = threading.Event()
        self._stopped = threading.Event()

    def _transaction(self) -> AbstractContextManager[Transaction]:
        raise NotImplementedError

    def close(self) -> None:
        self._stopped.set()

    def check(self) -> None:
        """Raise StoreError unless the store can be opened and read."""
        with self._transaction() as db:
            db.execute("SELECT count(*) FROM mails WHERE 1 = 0").fetchone()

    def depth(self) -> dict[str, int]:
        """Queue depth: alerts in the buffer, held by the cooldown, mails waiting, dead."""
        with self._transaction() as db:
            counts = dict(
                db.execute(
                    "SELECT state, count(*) FROM alerts WHERE state IN ('buffered', 'held')"
                    " GROUP BY state"
                ).fetchall()
            )
            mails = dict(
                db.execute(
                    "SELECT state, count(*) FROM mails WHERE state IN ('pending', 'dead')"
                    " GROUP BY state"
                ).fetchall()
            )
        return {
            "buffered_alerts": counts.get("buffered", 0),
            "held_alerts": counts.get("held", 0),
            "pending_mails": mails.get("pending", 0),
            "dead_letters": mails.get("dead", 0),
        }

    def oldest_pending_created_at(self) -> float | None:
        with self._transaction() as db:
            return db.execute(
                "SELECT min(created_at) FROM mails WHERE state = 'pending'"
            ).fetchone()[0]

    def _start_renewing(self) -> None:
        """Shared stores: from the first claim on, renew this process's leases every third
        of a lease, so a slow delivery keeps its mail and a dead process loses it."""
        if not self.shared or self._renewing.is_set():
            return
        self._renewing.set()
        threading.Thread(target=self._renew, name="lease-renewal", daemon=True).start()

    def _renew(self) -> None:
        while not self._stopped.wait(self.lease / 3):
            try:
                with self._transaction() as db:
                    db.execute(
                        f"UPDATE mails SET claimed_until = {self.NOW_SQL} + ?"
                        " WHERE claimed_by = ? AND state = 'pending'",
                        (self.lease, self.holder),
                    )
                    db.execute(
                        f"UPDATE leases SET expires_at = {self.NOW_SQL} + ? WHERE holder = ?",
                        (self.lease, self.holder),
                    )
            except StoreError:
                pass  # the database is away: the leases run out, as they should
