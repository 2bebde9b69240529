"""The durable queue: received alerts, composed mails, cooldown times, the heartbeat and leases.

Two stores implement it with the same SQL, written once here (`SqlStore`): one SQLite file for
one relay (`store_sqlite.py`), or a PostgreSQL database shared by any number of relay replicas
(`store_postgres.py`). Either way a webhook is answered 2xx only after its transaction committed.

What makes N replicas safe on one database, all in this file:
- dedup: an alert's key (fingerprint|status|startsAt) is unique; a second copy, from another
  Alertmanager through another replica, is `ON CONFLICT DO NOTHING`;
- planning (buffer -> mails, cooldowns) runs under the `planner` lease, one replica at a time; if
  a replica loses the lease mid-plan (stalled longer than the lease), its commit finds the alerts
  no longer buffered and rolls back (`PlanConflict`), so nothing is planned twice;
- delivery: a replica claims a due mail with a row lock (`FOR UPDATE SKIP LOCKED` on PostgreSQL)
  and a lease (`claimed_by`, `claimed_until`) that it renews while it sends; a replica killed
  while sending loses the mail to another once the lease ends (RELAY_LEASE);
- "monitoring is blind/back" is queued by whichever replica flips the flag first.
Lease times are the database's clock, so replicas' clocks do not matter for them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from dockpulse_relay.alerts import Alert

DEFAULT_LEASE_SECONDS = 5.0
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
PLANNER = "planner"
BLIND_NOTICE = "blind"  # the notice row holding when "monitoring is blind" was last queued


class StoreError(RuntimeError):
    """The store cannot be read or written (disk full, read-only, database down...)."""


class PlanConflict(RuntimeError):
    """Another replica planned some of these alerts first: this plan was rolled back."""


@dataclass(frozen=True)
class BufferedAlert:
    id: int
    alert: Alert
    received_at: float
    held: bool = False  # held back by the cooldown (state held)


@dataclass(frozen=True)
class Cooldown:
    """The last mail about a fingerprint."""

    mailed_at: float
    status: str
    summary: bool


@dataclass(frozen=True)
class NewMail:
    """A composed mail and the alerts it carries, committed together."""

    message_id: str
    kind: str
    subject: str
    message: bytes
    alert_ids: list[int]
    first_received_at: float
    cooldown: list[tuple[str, str, bool]]  # (fingerprint, status, summary) it mails
    priority: int = 2
    error: str | None = None  # set: could not be composed, stored as a dead letter


@dataclass(frozen=True)
class QueuedMail:
    id: int
    message_id: str
    kind: str
    subject: str
    message: bytes
    first_received_at: float
    attempts: int
    priority: int = 2


@dataclass(frozen=True)
class DeadLetter:
    id: int
    message_id: str
    kind: str
    subject: str
    created_at: float
    attempts: int
    error: str


@dataclass(frozen=True)
class Heartbeat:
    received_at: float
    evaluated_at: float | None
    blind: bool


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


class SqlStore:
    """The store's logic, in SQL both SQLite and PostgreSQL run. A subclass opens transactions
    (`_transaction`) and says how its database writes the time now and a row lock."""

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

    def record(self, alerts: Iterable[Alert], now: float) -> list[bool]:
        """Store new alerts durably; for each, False when it was already there (a duplicate,
        also one another replica stored)."""
        fresh = []
        with self._transaction() as db:
            for alert in alerts:
                cursor = db.execute(
                    "INSERT INTO alerts (key, fingerprint, status, critical, received_at, alert)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
                    (
                        alert.key,
                        alert.fingerprint,
                        alert.status,
                        int(alert.critical),
                        now,
                        alert.to_json(),
                    ),
                )
                fresh.append(cursor.rowcount == 1)
        return fresh

    @contextmanager
    def planning(self) -> Iterator[bool]:
        """Hold the planner lease while planning; yields False when another replica holds it."""
        acquired = self._take_lease(PLANNER)
        if acquired:
            self._start_renewing()
        try:
            yield acquired
        finally:
            if acquired:
                with self._transaction() as db:
                    db.execute(
                        "DELETE FROM leases WHERE name = ? AND holder = ?", (PLANNER, self.holder)
                    )

    def _take_lease(self, name: str) -> bool:
        with self._transaction() as db:
            row = db.execute(
                "INSERT INTO leases (name, holder, expires_at)"
                f" VALUES (?, ?, {self.NOW_SQL} + ?) ON CONFLICT (name) DO UPDATE"
                " SET holder = excluded.holder, expires_at = excluded.expires_at"
                f" WHERE leases.holder = excluded.holder OR leases.expires_at < {self.NOW_SQL}"
                " RETURNING holder",
                (name, self.holder, self.lease),
            ).fetchone()
        return row is not None

    def buffered(self, now: float, warnings_received_before: float) -> list[BufferedAlert]:
        """What planning looks at: buffered critical alerts, all buffered warnings once the
        oldest is from before the time, held alerts whose cooldown is over, and the held
        alerts of every fingerprint among those (so changes coalesce).

        Cheap when nothing is due: the digest is only read when it is about to go out.
        """
        with self._transaction() as db:
            oldest = db.execute(
                "SELECT min(received_at) FROM alerts WHERE state = 'buffered' AND critical = 0"
            ).fetchone()[0]
            warnings_due = oldest is not None and oldest <= warnings_received_before
            critical = 0 if warnings_due else 1
            rows = db.execute(
                "SELECT id, alert, received_at, state FROM alerts WHERE (state = 'buffered'"
                " AND critical >= ?) OR (state = 'held' AND (due_at <= ?"
                " OR fingerprint IN (SELECT fingerprint FROM alerts WHERE state = 'buffered'"
                " AND critical >= ?))) ORDER BY received_at, id",
                (critical, now, critical),
            ).fetchall()
        return [
            BufferedAlert(row[0], Alert.from_json(row[1]), row[2], row[3] == "held") for row in rows
        ]

    def cooldowns(self, fingerprints: Iterable[str]) -> dict[str, Cooldown]:
        """The last mail about each fingerprint, for those mailed."""
        found = {}
        with self._transaction() as db:
            for fingerprint in set(fingerprints):
                row = db.execute(
                    "SELECT mailed_at, status, summary FROM cooldowns WHERE fingerprint = ?",
                    (fingerprint,),
                ).fetchone()
                if row is not None:
                    found[fingerprint] = Cooldown(row[0], row[1], bool(row[2]))
        return found

    def enqueue(
        self,
        mails: list[NewMail],
        suppressed: list[int],
        now: float,
        held: dict[int, float] | None = None,
    ) -> None:
        """Turn buffered alerts into queued mails, held or dropped ones, in one transaction.

        A mail with an `error` could not be composed: it is stored as a dead letter at once,
        its alerts attached, so `dead-letters requeue` can plan them again. PlanConflict (all
        rolled back) when an alert is no longer buffered or held: another replica planned it.
        """
        planned = {alert_id for mail in mails for alert_id in mail.alert_ids}
        planned |= set(suppressed) | set(held or {})
        with self._transaction() as db:
            self._lock_planned(db, planned)
            for mail in mails:
                (mail_id,) = db.execute(
                    "INSERT INTO mails (message_id, kind, subject, message, first_received_at,"
                    " created_at, next_attempt_at, priority, state, last_error)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (mail.message_id, mail.kind, mail.subject, mail.message,
                     mail.first_received_at, now, now, mail.priority,
                     "dead" if mail.error else "pending", mail.error),
                ).fetchone()  # fmt: skip
                for alert_id in mail.alert_ids:
                    db.execute(
                        "UPDATE alerts SET state = 'mailed', mail_id = ?, due_at = NULL"
                        " WHERE id = ?",
                        (mail_id, alert_id),
                    )
                for fingerprint, status, summary in mail.cooldown:
                    db.execute(
                        "INSERT INTO cooldowns (fingerprint, mailed_at, status, summary)"
                        " VALUES (?, ?, ?, ?) ON CONFLICT (fingerprint) DO UPDATE"
                        " SET mailed_at = excluded.mailed_at, status = excluded.status,"
                        " summary = excluded.summary",
                        (fingerprint, now, status, int(summary)),
                    )
            for alert_id in suppressed:
                db.execute("UPDATE alerts SET state = 'suppressed' WHERE id = ?", (alert_id,))
            for alert_id, due_at in (held or {}).items():
                db.execute(
                    "UPDATE alerts SET state = 'held', due_at = ? WHERE id = ?", (due_at, alert_id)
                )

    def _lock_planned(self, db: Transaction, alert_ids: set[int]) -> None:
        """Lock the alerts a plan turns into mails; PlanConflict unless every one is still
        buffered or held (another replica planned it, or is committing its plan now)."""
        if not alert_ids:
            return
        marks = ", ".join("?" * len(alert_ids))
        found = db.execute(
            f"SELECT id FROM alerts WHERE id IN ({marks}) AND state IN ('buffered', 'held')"
            f" {self.LOCK_ROWS}",
            list(alert_ids),
        ).fetchall()
        if len(found) != len(alert_ids):
            missing = sorted(alert_ids - {row[0] for row in found})
            raise PlanConflict(f"alerts {missing[:5]} were planned by another replica")

    def add_mail(self, mail: NewMail, now: float) -> None:
        """Queue a mail that carries no alert (the relay's own: monitoring blind/back)."""
        self.enqueue([mail], [], now)

    def _unclaimed(self) -> str:
        """SQL: a mail nobody else holds (never claimed, lease over, or claimed by us)."""
        return f"(claimed_until IS NULL OR claimed_until < {self.NOW_SQL} OR claimed_by = ?)"

    def next_due(self, now: float, priorities: tuple[int, int]) -> QueuedMail | None:
        """Claim the most urgent mail due now whose priority is within `priorities` (low,
        high): locked for this transaction, then leased to this process until it is marked
        sent, retried or dead (the lease renewed meanwhile)."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT id, message_id, kind, subject, message, first_received_at, attempts,"
                " priority FROM mails WHERE state = 'pending' AND next_attempt_at <= ?"
                f" AND priority BETWEEN ? AND ? AND {self._unclaimed()}"
                f" ORDER BY priority, id LIMIT 1 {self.LOCK_ROWS}",
                (now, *priorities, self.holder),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                f"UPDATE mails SET claimed_by = ?, claimed_until = {self.NOW_SQL} + ? WHERE id = ?",
                (self.holder, self.lease, row[0]),
            )
        self._start_renewing()
        return QueuedMail(*row[:4], bytes(row[4]), *row[5:])

    def next_attempt_at(self, priorities: tuple[int, int] = (0, 99)) -> float | None:
        """When the next mail this process may claim is due (one another holds is not)."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT min(next_attempt_at) FROM mails WHERE state = 'pending'"
                f" AND priority BETWEEN ? AND ? AND {self._unclaimed()}",
                (*priorities, self.holder),
            ).fetchone()
        return row[0]

    def oldest_pending_created_at(self) -> float | None:
        with self._transaction() as db:
            return db.execute(
                "SELECT min(created_at) FROM mails WHERE state = 'pending'"
            ).fetchone()[0]

    def mark_sent(self, mail_id: int, now: float) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE mails SET state = 'sent', sent_at = ?, attempts = attempts + 1,"
                " claimed_by = NULL, claimed_until = NULL WHERE id = ?",
                (now, mail_id),
            )

    def mark_retry(self, mail_id: int, next_attempt_at: float, error: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE mails SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?,"
                " claimed_by = NULL, claimed_until = NULL WHERE id = ?",
                (next_attempt_at, error, mail_id),
            )

    def retry_all_now(self, now: float) -> None:
        """The backend works again: every backed-off mail is due now."""
        with self._transaction() as db:
            db.execute(
                "UPDATE mails SET next_attempt_at = ? WHERE state = 'pending'"
                " AND next_attempt_at > ?",
                (now, now),
            )

    def mark_dead(self, mail_id: int, error: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE mails SET state = 'dead', attempts = attempts + 1, last_error = ?,"
                " claimed_by = NULL, claimed_until = NULL WHERE id = ?",
                (error, mail_id),
            )

    def dead_letters(self) -> list[DeadLetter]:
        with self._transaction() as db:
            rows = db.execute(
                "SELECT id, message_id, kind, subject, created_at, attempts,"
                " coalesce(last_error, '') FROM mails WHERE state = 'dead' ORDER BY id"
            ).fetchall()
        return [DeadLetter(*row) for row in rows]

    def requeue(self, mail_ids: Iterable[int] | None, now: float) -> int:
        """Dead letters back to work (all when `mail_ids` is None); how many.

        A composed one is queued again; one that could not be composed gives its alerts back
        to the buffer, to be planned (and composed) again.
        """
        with self._transaction() as db:
            if mail_ids is None:
                dead = db.execute("SELECT id FROM mails WHERE state = 'dead'").fetchall()
                ids = [row[0] for row in dead]
            else:
                ids = [
                    mail_id
                    for mail_id in mail_ids
                    if db.execute(
                        "SELECT 1 FROM mails WHERE id = ? AND state = 'dead'", (mail_id,)
                    ).fetchone()
                ]
            for mail_id in ids:
                (message,) = db.execute(
                    "SELECT length(message) FROM mails WHERE id = ?", (mail_id,)
                ).fetchone()
                if message:
                    db.execute(
                        "UPDATE mails SET state = 'pending', attempts = 0, next_attempt_at = ?,"
                        " last_error = NULL WHERE id = ?",
                        (now, mail_id),
                    )
                else:
                    db.execute(
                        "UPDATE alerts SET state = 'buffered', mail_id = NULL WHERE mail_id = ?",
                        (mail_id,),
                    )
                    db.execute("DELETE FROM mails WHERE id = ?", (mail_id,))
        return len(ids)

    def heartbeat(self) -> Heartbeat | None:
        with self._transaction() as db:
            row = db.execute(
                "SELECT received_at, evaluated_at, blind FROM heartbeat WHERE id = 1"
            ).fetchone()
        return None if row is None else Heartbeat(row[0], row[1], bool(row[2]))

    def record_heartbeat(self, received_at: float, evaluated_at: float | None) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO heartbeat (id, received_at, evaluated_at) VALUES (1, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET received_at = excluded.received_at,"
                " evaluated_at = excluded.evaluated_at",
                (received_at, evaluated_at),
            )

    def set_blind(self, blind: bool, mail: NewMail, now: float) -> bool:
        """Flip the blind flag and queue the mail saying so, in one transaction; False (and
        nothing queued) when it was flipped already, by another replica."""
        with self._transaction() as db:
            flipped = db.execute(
                "UPDATE heartbeat SET blind = ? WHERE id = 1 AND blind = ?",
                (int(blind), int(not blind)),
            ).rowcount
            if flipped != 1:
                return False
            if blind:  # BLIND_REPEAT counts from this mail
                self._record_notice(db, BLIND_NOTICE, now, None)
            self._insert_mail(db, mail, now)
        return True

    def send_notice(
        self, key: str, mail: NewMail, now: float, repeat_after: float | None = None
    ) -> bool:
        """Queue the relay's own `mail` once under `key` (a silence warned about), or again
        when the last one is `repeat_after` old; False (nothing queued) when it is not due, or
        another replica queued it first. The notice and its mail commit together."""
        with self._transaction() as db:
            if not self._record_notice(db, key, now, repeat_after):
                return False
            self._insert_mail(db, mail, now)
        return True

    @staticmethod
    def _record_notice(db: Transaction, key: str, now: float, repeat_after: float | None) -> bool:
        """Upsert the notice's time when it is new or due; True when this call did."""
        due_before = -1.0 if repeat_after is None else now - repeat_after
        return (
            db.execute(
                "INSERT INTO notices (key, sent_at) VALUES (?, ?) ON CONFLICT (key) DO UPDATE"
                " SET sent_at = excluded.sent_at WHERE notices.sent_at <= ?",
                (key, now, due_before),
            ).rowcount
            == 1
        )

    @staticmethod
    def _insert_mail(db: Transaction, mail: NewMail, now: float) -> None:
        db.execute(
            "INSERT INTO mails (message_id, kind, subject, message, first_received_at,"
            " created_at, next_attempt_at, priority) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (mail.message_id, mail.kind, mail.subject, mail.message,
             mail.first_received_at, now, now, mail.priority),
        )  # fmt: skip

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

    def purge(self, before: float) -> None:
        """Forget alerts and delivered mails older than `before` (the dedup memory ends there).

        Dead letters stay until they are re-queued: nobody should lose one by waiting.
        """
        with self._transaction() as db:
            for statement in (
                "DELETE FROM alerts WHERE state IN ('mailed', 'suppressed') AND received_at < ?"
                " AND (mail_id IS NULL OR mail_id NOT IN (SELECT id FROM mails"
                " WHERE state = 'dead'))",
                "DELETE FROM mails WHERE state = 'sent' AND created_at < ?",
                "DELETE FROM cooldowns WHERE mailed_at < ?",
            ):
                db.execute(statement, (before,))

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


def describe_store(store: Path | str) -> str:
    """RELAY_STORE for logs and messages: a URL without its password."""
    if isinstance(store, str) and store.startswith(POSTGRES_SCHEMES):
        parts = urlsplit(store)
        if parts.password is not None:
            host = parts.netloc.rpartition("@")[2]
            return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
    return str(store)


def open_store(
    store: Path | str, synchronous: str = "normal", lease: float = DEFAULT_LEASE_SECONDS
) -> SqlStore:
    """The store RELAY_STORE names: a `postgresql://` URL, else a SQLite file's path."""
    if isinstance(store, str) and store.startswith(POSTGRES_SCHEMES):
        from dockpulse_relay.store_postgres import PostgresStore  # psycopg2 only when used

        return PostgresStore(store, lease)
    from dockpulse_relay.store_sqlite import SqliteStore

    return SqliteStore(Path(store), synchronous, lease)
