"""The queries of the planner: its lease, the buffer and cooldowns it reads, the plan it
commits (mails queued with their alerts marked, in one transaction), the heartbeat and the
relay's own notices, and forgetting old history."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from dockpulse_relay.model import Alert, BufferedAlert, Cooldown, Heartbeat, NewMail
from dockpulse_relay.store.base import BLIND_NOTICE, PLANNER, PlanConflict, SqlBase, Transaction


class PlanningQueries(SqlBase):
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
                mail_id = self._insert_mail(db, mail, now)
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

    def heartbeat(self) -> Heartbeat | None:
        with self._transaction() as db:
            row = db.execute(
                "SELECT received_at, evaluated_at, blind FROM heartbeat WHERE id = 1"
            ).fetchone()
        return None if row is None else Heartbeat(row[0], row[1], bool(row[2]))

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
    def _insert_mail(db: Transaction, mail: NewMail, now: float) -> int:
        """Queue `mail` (a dead letter at once when it could not be composed); its row id."""
        (mail_id,) = db.execute(
            "INSERT INTO mails (message_id, kind, subject, message, first_received_at,"
            " created_at, next_attempt_at, priority, state, last_error)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (mail.message_id, mail.kind, mail.subject, mail.message,
             mail.first_received_at, now, now, mail.priority,
             "dead" if mail.error else "pending", mail.error),
        ).fetchone()  # fmt: skip
        return int(mail_id)

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
