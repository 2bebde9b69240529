"""Mails from alerts: multipart text + HTML, a subject that says what broke where.

Alert content comes from labels and annotations anyone with a container may set, so every value
is cleaned before it reaches the message: header values lose CR/LF and every other control
character (no header injection, no folding tricks) and are bounded in length; body text keeps
line breaks but no other control characters; HTML is escaped; lone surrogates (valid JSON,
not encodable) become U+FFFD.
"""

from __future__ import annotations

import html
import re
import time
import unicodedata
import uuid
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate
from urllib.parse import urlsplit

from dockpulse_relay.alerts import Alert
from dockpulse_relay.digest import Entry, MailPlan
from dockpulse_relay.store import NewMail

SUBJECT_LIMIT = 180
# RFC 5322's line limit: a subject of up to SUBJECT_LIMIT characters stays on one line.
WIRE_POLICY = SMTP.clone(max_line_length=998)
VALUE_LIMIT = 4000  # one fact in the body (a description, a runbook)
_SPACES = re.compile(r"\s+")
# Characters that end a line somewhere (Unicode line/paragraph separators, NEL, FF, VT, ...).
_LINE_BREAKS = {"\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"}


def _clean_char(char: str, keep_newlines: bool) -> str:
    if char == "\n" and keep_newlines:
        return char
    category = unicodedata.category(char)
    if category == "Cs":  # a lone surrogate: valid in JSON, not encodable
        return "\ufffd"
    if char in _LINE_BREAKS or char == "\t" or category in ("Cc", "Zl", "Zp"):
        return " "
    return char


def header_value(text: str, limit: int = SUBJECT_LIMIT) -> str:
    """One line, printable, at most `limit` characters: safe in any header."""
    cleaned = "".join(_clean_char(char, keep_newlines=False) for char in text)
    cleaned = _SPACES.sub(" ", cleaned).strip()
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def body_value(text: str, limit: int = VALUE_LIMIT) -> str:
    """Body text: line breaks kept (CRLF -> LF), other control characters replaced, bounded."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    cleaned = "".join(_clean_char(char, keep_newlines=True) for char in text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def subject(plan: MailPlan) -> str:
    """E.g. `[CRITICAL] 1 alert: ContainerDown (webapp)`, `[RESOLVED] [WARNING] 2 alerts: ...`;
    `[FLAPPING ...]` when changes were held back by the cooldown."""
    containers: dict[str, list[str]] = {}
    for entry in plan.entries:
        names = containers.setdefault(entry.alert.alertname, [])
        if entry.alert.container and entry.alert.container not in names:
            names.append(entry.alert.container)
    parts = [f"{name} ({', '.join(on)})" if on else name for name, on in containers.items()]
    count = len(plan.entries)
    prefix = "[RESOLVED] " if plan.resolved else ""
    text = f"{prefix}[{plan.severity.upper()}] {count} alert{'s' if count != 1 else ''}: "
    text += ", ".join(parts)
    flapping = [entry for entry in plan.entries if entry.held]
    if flapping:
        text = f"[FLAPPING {'down' if not plan.resolved else 'up'} now] " + text
    return header_value(text)


def prometheus_link(alert: Alert, prometheus_url: str) -> str:
    """The alert's graph on the configured Prometheus (Alertmanager's host may be internal)."""
    if alert.generator_url:
        parts = urlsplit(body_value(alert.generator_url, 2000).replace("\n", ""))
        query = f"?{parts.query}" if parts.query else ""
        return f"{prometheus_url}{parts.path or '/graph'}{query}"
    return f"{prometheus_url}/alerts"


def history(entry: Entry) -> str:
    """What happened while mails about this alert were held by the cooldown."""
    if not entry.held:
        return ""
    down = sum(change.status == "firing" for change in entry.changes)
    up = len(entry.changes) - down
    now = "DOWN NOW (still firing)" if entry.alert.status == "firing" else "resolved now"
    changes = len(entry.changes)
    return (
        f"{changes} change{'s' if changes != 1 else ''} held back by the cooldown: went down "
        f"{_times(down)}, came back {_times(up)}; first change {entry.first_change}, last change "
        f"{entry.last_change}; {now}"
    )


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def _facts(entry: Entry, prometheus_url: str) -> list[tuple[str, str]]:
    alert = entry.alert
    notes = alert.annotations
    facts = [
        ("Alert", alert.alertname),
        ("Container", alert.container or "-"),
        ("Severity", alert.severity),
        ("Status", alert.status),
        ("History", history(entry)),
        ("Summary", notes.get("summary", "")),
        ("Description", notes.get("description", "")),
        ("Value", notes.get("value", "")),
        ("Started", alert.starts_at),
        ("Ended", alert.ends_at if alert.status == "resolved" else ""),
        ("Runbook", notes.get("runbook", "") or notes.get("runbook_url", "")),
        ("Prometheus", prometheus_link(alert, prometheus_url)),
        ("Fingerprint", alert.fingerprint),
    ]
    return [(name, body_value(text)) for name, text in facts if text]


def _text(title: str, entries: list[Entry], prometheus_url: str) -> str:
    lines = [title, "=" * min(len(title), 78), ""]
    for entry in entries:
        lines += [f"{name + ':':<13}{text}" for name, text in _facts(entry, prometheus_url)]
        lines.append("")
    lines.append("-- dockpulse-relay")
    return "\n".join(lines) + "\n"


def _html(title: str, entries: list[Entry], prometheus_url: str) -> str:
    sections = []
    for entry in entries:
        rows = []
        for name, text in _facts(entry, prometheus_url):
            value = html.escape(text)
            if name == "Prometheus":
                value = f'<a href="{value}">open in Prometheus</a>'
            rows.append(f"<tr><th align='left'>{name}</th><td>{value}</td></tr>")
        sections.append(f"<table cellpadding='3'>{''.join(rows)}</table><hr>")
    return (
        f"<html><body><h2>{html.escape(title)}</h2>{''.join(sections)}"
        "<p><small>dockpulse-relay</small></p></body></html>\n"
    )


def new_message_id(now: float) -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now))}-{uuid.uuid4().hex[:12]}"


def build_message(
    title: str, kind: str, text: str, html_body: str, sender: str, recipients: list[str], now: float
) -> tuple[str, bytes]:
    """(message id, the RFC 5322 bytes with CRLF line ends, as the wire wants)."""
    token = new_message_id(now)
    message = EmailMessage()
    message["Subject"] = header_value(title)
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(now, usegmt=True)
    message["Message-ID"] = f"<{token}@dockpulse-relay>"
    message["X-Dockpulse-Kind"] = kind
    message.set_content(text)
    message.add_alternative(html_body, subtype="html")
    return token, message.as_bytes(policy=WIRE_POLICY)


def compose(
    plan: MailPlan, sender: str, recipients: list[str], prometheus_url: str, now: float
) -> NewMail:
    """The mail for a plan, ready to store and send byte for byte."""
    title = subject(plan)
    entries = plan.entries
    token, message = build_message(
        title,
        plan.kind,
        _text(title, plan.entries, prometheus_url),
        _html(title, plan.entries, prometheus_url),
        sender,
        recipients,
        now,
    )
    return NewMail(
        message_id=token,
        kind=plan.kind,
        subject=title,
        message=message,
        alert_ids=[alert_id for entry in plan.entries for alert_id in entry.ids],
        first_received_at=min(entry.received_at for entry in plan.entries),
        cooldown=[(entry.alert.fingerprint, entry.alert.status, entry.held) for entry in entries],
    )


def uncomposable(plan: MailPlan, error: str, now: float) -> NewMail:
    """A dead letter for a plan that could not be made into a mail; its alerts stay findable."""
    return NewMail(
        message_id=new_message_id(now),
        kind=plan.kind,
        subject=header_value(f"(not composed) {plan.kind}: {error}"),
        message=b"",
        alert_ids=[alert_id for entry in plan.entries for alert_id in entry.ids],
        first_received_at=min(entry.received_at for entry in plan.entries),
        cooldown=[],
        error=f"cannot compose: {error}",
    )
