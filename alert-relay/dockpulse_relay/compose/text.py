"""An alert's text made safe for a mail, once per alert: the rules of dockpulse/text.py (which
the exporter applies to log lines too). Header values lose CR/LF and every other control
character (no header injection, no folding tricks) and are bounded in length; body text keeps
line breaks but no other control characters; lone surrogates (valid JSON, not encodable)
become U+FFFD. HTML escaping is the renderer's (message.py, parts.py)."""

from __future__ import annotations

from dataclasses import replace

from dockpulse.text import body_text, no_surrogates, one_line
from dockpulse_relay.model import Alert

SUBJECT_LIMIT = 180


VALUE_LIMIT = 4000  # one fact in the body (a description, a runbook)


def header_value(text: str, limit: int = SUBJECT_LIMIT) -> str:
    """One line, printable, at most `limit` characters: safe in any header."""
    return one_line(text, limit)


def body_value(text: str, limit: int = VALUE_LIMIT) -> str:
    """Body text: line breaks kept (CRLF -> LF), other control characters replaced, bounded."""
    return body_text(text, limit)


def link_ready(alert: Alert) -> Alert:
    """The alert with every value encodable (labels as Alertmanager keeps them) and annotations
    cleaned for the body, ready for links and the "what to do" section."""
    return replace(
        alert,
        alertname=no_surrogates(alert.alertname),
        container=no_surrogates(alert.container),
        labels={no_surrogates(key): no_surrogates(value) for key, value in alert.labels.items()},
        annotations={key: body_value(value) for key, value in alert.annotations.items()},
        generator_url=no_surrogates(alert.generator_url),
    )


def runbook(alert: Alert) -> str:
    notes = alert.annotations
    return notes.get("runbook", "") or notes.get("runbook_url", "")
