"""Alertmanager's webhook payload (version 4) and the alert as the relay keeps it."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dockpulse_relay.model import CONTAINER_LABELS, Alert


class PayloadError(ValueError):
    """The body is not an Alertmanager webhook notification; the message says why."""


class WebhookAlert(BaseModel):
    """One alert of a notification (camelCase: Alertmanager's field names)."""

    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: str = ""


class WebhookNotification(BaseModel):
    """What Alertmanager POSTs; fields the relay does not use are tolerated."""

    model_config = ConfigDict(extra="ignore")

    version: Literal["4"]
    receiver: str = ""
    status: Literal["firing", "resolved"]
    alerts: list[WebhookAlert]
    externalURL: str = ""


def parse_notification(body: bytes) -> list[Alert]:
    """The alerts in a webhook body; PayloadError when it is not Alertmanager's."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"malformed JSON: {exc}") from None
    try:
        notification = WebhookNotification.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "payload"
        message = f"not an Alertmanager v4 notification: {where}: {error['msg']}"
        raise PayloadError(message) from None
    return [_alert(item, notification.externalURL) for item in notification.alerts]


def _alert(item: WebhookAlert, external_url: str) -> Alert:
    labels = item.labels
    return Alert(
        fingerprint=item.fingerprint or label_fingerprint(labels),
        status=item.status,
        starts_at=item.startsAt.isoformat(),
        ends_at=item.endsAt.isoformat() if item.endsAt and item.endsAt.year > 1 else "",
        alertname=labels.get("alertname", "unnamed"),
        severity=labels.get("severity", "warning").lower(),
        container=next((labels[name] for name in CONTAINER_LABELS if labels.get(name)), ""),
        labels=labels,
        annotations=item.annotations,
        generator_url=item.generatorURL,
        external_url=external_url,
    )


def label_fingerprint(labels: dict[str, str]) -> str:
    """A stable fingerprint from the label set, for senders that leave it out."""
    canonical = json.dumps(labels, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


EVALUATED_AT = "evaluated_at"


def evaluated_at(alerts: list[Alert]) -> float | None:
    """The newest Prometheus evaluation time among the firing Watchdogs, when they carry one."""
    times = []
    for alert in alerts:
        try:
            times.append(float(alert.annotations.get(EVALUATED_AT, "")))
        except ValueError:
            continue
    finite = [t for t in times if t == t and abs(t) != float("inf")]
    return max(finite) if finite else None
