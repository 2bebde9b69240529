"""The queries of the intake: store received alerts (deduplicated) and heartbeats."""

from __future__ import annotations

from collections.abc import Iterable

from dockpulse_relay.model import Alert
from dockpulse_relay.store.base import SqlBase


class IntakeQueries(SqlBase):
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

    def record_heartbeat(self, received_at: float, evaluated_at: float | None) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO heartbeat (id, received_at, evaluated_at) VALUES (1, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET received_at = excluded.received_at,"
                " evaluated_at = excluded.evaluated_at",
                (received_at, evaluated_at),
            )
