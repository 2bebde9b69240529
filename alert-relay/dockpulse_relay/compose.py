"""Mails from alerts: multipart text + HTML, a subject that says what broke where."""

from __future__ import annotations

import html
import time
import uuid
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate
from urllib.parse import urlsplit

from dockpulse_relay.alerts import Alert
from dockpulse_relay.digest import MailPlan
from dockpulse_relay.store import NewMail

SUBJECT_LIMIT = 180


def subject(plan: MailPlan) -> str:
    """E.g. `[CRITICAL] 1 alert: ContainerDown (webapp)`, `[RESOLVED] [WARNING] 2 alerts: ...`."""
    containers: dict[str, list[str]] = {}
    for item in plan.alerts:
        names = containers.setdefault(item.alert.alertname, [])
        if item.alert.container and item.alert.container not in names:
            names.append(item.alert.container)
    parts = [f"{name} ({', '.join(on)})" if on else name for name, on in containers.items()]
    count = len(plan.alerts)
    prefix = "[RESOLVED] " if plan.resolved else ""
    text = f"{prefix}[{plan.severity.upper()}] {count} alert{'s' if count != 1 else ''}: "
    text += ", ".join(parts)
    return text if len(text) <= SUBJECT_LIMIT else text[: SUBJECT_LIMIT - 1] + "…"


def prometheus_link(alert: Alert, prometheus_url: str) -> str:
    """The alert's graph on the configured Prometheus (Alertmanager's host may be internal)."""
    if alert.generator_url:
        parts = urlsplit(alert.generator_url)
        query = f"?{parts.query}" if parts.query else ""
        return f"{prometheus_url}{parts.path or '/graph'}{query}"
    return f"{prometheus_url}/alerts"


def _facts(alert: Alert, prometheus_url: str) -> list[tuple[str, str]]:
    notes = alert.annotations
    facts = [
        ("Alert", alert.alertname),
        ("Container", alert.container or "-"),
        ("Severity", alert.severity),
        ("Status", alert.status),
        ("Summary", notes.get("summary", "")),
        ("Description", notes.get("description", "")),
        ("Value", notes.get("value", "")),
        ("Started", alert.starts_at),
        ("Ended", alert.ends_at if alert.status == "resolved" else ""),
        ("Runbook", notes.get("runbook", "") or notes.get("runbook_url", "")),
        ("Prometheus", prometheus_link(alert, prometheus_url)),
        ("Fingerprint", alert.fingerprint),
    ]
    return [(name, text) for name, text in facts if text]


def _text(title: str, alerts: list[Alert], prometheus_url: str) -> str:
    lines = [title, "=" * min(len(title), 78), ""]
    for alert in alerts:
        lines += [f"{name + ':':<13}{text}" for name, text in _facts(alert, prometheus_url)]
        lines.append("")
    lines.append("-- dockpulse-relay")
    return "\n".join(lines) + "\n"


def _html(title: str, alerts: list[Alert], prometheus_url: str) -> str:
    sections = []
    for alert in alerts:
        rows = []
        for name, text in _facts(alert, prometheus_url):
            value = html.escape(text)
            if name == "Prometheus":
                value = f'<a href="{value}">open in Prometheus</a>'
            rows.append(f"<tr><th align='left'>{name}</th><td>{value}</td></tr>")
        sections.append(f"<table cellpadding='3'>{''.join(rows)}</table><hr>")
    return (
        f"<html><body><h2>{html.escape(title)}</h2>{''.join(sections)}"
        "<p><small>dockpulse-relay</small></p></body></html>\n"
    )


def compose(
    plan: MailPlan, sender: str, recipients: list[str], prometheus_url: str, now: float
) -> NewMail:
    """The mail for a plan, ready to store and send byte for byte."""
    token = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now))}-{uuid.uuid4().hex[:12]}"
    title = subject(plan)
    alerts = [item.alert for item in plan.alerts]
    message = EmailMessage()
    message["Subject"] = title
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(now, usegmt=True)
    message["Message-ID"] = f"<{token}@dockpulse-relay>"
    message["X-Dockpulse-Kind"] = plan.kind
    message.set_content(_text(title, alerts, prometheus_url))
    message.add_alternative(_html(title, alerts, prometheus_url), subtype="html")
    return NewMail(
        message_id=token,
        kind=plan.kind,
        subject=title,
        message=message.as_bytes(policy=SMTP),  # CRLF line ends, as the wire wants
        alert_ids=[item.id for item in plan.alerts],
        first_received_at=min(item.received_at for item in plan.alerts),
        cooldown_keys=[(alert.fingerprint, alert.status) for alert in alerts],
    )
