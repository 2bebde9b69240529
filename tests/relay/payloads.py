"""Alertmanager webhook payloads (version 4), as Alertmanager 0.25 sends them."""

from __future__ import annotations

import hashlib

STARTS_AT = "2024-05-01T10:00:00.000Z"


def alert(
    name: str = "ContainerDown",
    container: str = "webapp",
    severity: str = "critical",
    status: str = "firing",
    starts_at: str = STARTS_AT,
    **annotations: str,
) -> dict[str, object]:
    labels = {"alertname": name, "severity": severity, "name": container, "job": "exporter"}
    fingerprint = hashlib.sha1(f"{name}/{container}".encode()).hexdigest()[:16]
    return {
        "status": status,
        "labels": labels,
        "annotations": {
            "summary": f"{name} on {container}",
            "description": f"{container}: {name} (value 1)",
            **annotations,
        },
        "startsAt": starts_at,
        "endsAt": "2024-05-01T11:00:00.000Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus-1:9090/graph?g0.expr=container_up+%3D%3D+0&g0.tab=1",
        "fingerprint": fingerprint,
    }


def notification(*alerts: dict[str, object]) -> dict[str, object]:
    firing = any(item["status"] == "firing" for item in alerts)
    return {
        "receiver": "relay",
        "status": "firing" if firing else "resolved",
        "alerts": list(alerts),
        "groupLabels": {"alertname": alerts[0]["labels"]["alertname"]},  # type: ignore[index]
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": '{}:{alertname="ContainerDown"}',
        "truncatedAlerts": 0,
    }


def watchdog(evaluated_at: float | None, status: str = "firing") -> dict[str, object]:
    """The Watchdog notification Alertmanager sends to /heartbeat; `evaluated_at` is
    Prometheus' evaluation time the rule puts in its annotation."""
    heartbeat = alert("Watchdog", "", "none", status)
    heartbeat["labels"] = {"alertname": "Watchdog", "severity": "none", "heartbeat": "true"}
    if evaluated_at is not None:
        heartbeat["annotations"]["evaluated_at"] = f"{evaluated_at:.0f}"  # type: ignore[index]
    return notification(heartbeat)


def at(minute: int) -> str:
    """10:<minute> on the test day, as Prometheus writes a time."""
    return f"2024-05-01T10:{minute:02d}:00Z"


def down(minute: int, **labels: str) -> dict[str, object]:
    """A notification that the container went down at `minute` (a new firing)."""
    return notification(alert(starts_at=at(minute), **labels))


def up(minute: int, **labels: str) -> dict[str, object]:
    """The resolved notification of the firing that began at `minute`, a minute later."""
    resolved = alert(status="resolved", starts_at=at(minute), **labels)
    resolved["endsAt"] = at(minute + 1)
    return notification(resolved)
