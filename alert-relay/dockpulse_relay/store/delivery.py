"""The queries of the delivery lanes: claim the most urgent due mail, mark it sent, retried or
dead; and the dead letters the CLI lists and re-queues."""

from __future__ import annotations

from collections.abc import Iterable

from dockpulse_relay.model import DeadLetter, QueuedMail
from dockpulse_relay.store.base import SqlBase


class DeliveryQueries(SqlBase):
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
