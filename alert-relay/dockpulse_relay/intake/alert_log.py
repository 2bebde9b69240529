"""The alert log: every received alert as one JSON line (`logs/container_alerts.log`)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

from dockpulse_relay.model import Alert


class AlertLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")

    def append(self, alerts: list[Alert], fresh: list[bool]) -> None:
        """One line per alert; `duplicate` marks re-deliveries Alertmanager made."""
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        lines = "".join(
            json.dumps(
                {
                    "time": now,
                    "status": alert.status,
                    "alertname": alert.alertname,
                    "severity": alert.severity,
                    "container": alert.container,
                    "summary": alert.annotations.get("summary", ""),
                    "starts_at": alert.starts_at,
                    "ends_at": alert.ends_at,
                    "fingerprint": alert.fingerprint,
                    "duplicate": not is_new,
                    "labels": alert.labels,
                },
                separators=(",", ":"),
            )
            + "\n"
            for alert, is_new in zip(alerts, fresh, strict=True)
        )
        with self._lock:
            self._file.write(lines)
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()
