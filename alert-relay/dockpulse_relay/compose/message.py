"""Mails from alerts: multipart text + HTML, a subject that says what broke where.

Alert content comes from labels and annotations anyone with a container may set, so every value
is cleaned (dockpulse/text.py, the rules the exporter applies to log lines too) before it
reaches the message: header values lose CR/LF and every other control
character (no header injection, no folding tricks) and are bounded in length; body text keeps
line breaks but no other control characters; HTML is escaped; lone surrogates (valid JSON,
not encodable) become U+FFFD.

A firing alert's section also has its graph (inline `cid:` and attached; or the one-line reason
there is none) and "what to do": runbook, silence links (only to an http(s) `externalURL`),
Prometheus graph and Grafana dashboard links. Resolved alerts keep the plain facts.
"""

from __future__ import annotations

import html
import time
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate
from urllib.parse import urlsplit

from dockpulse_relay.compose.chart import DEFAULT_WINDOW_SECONDS, Chart
from dockpulse_relay.compose.context import ContainerContext
from dockpulse_relay.compose.context_view import context_html, context_text, hints
from dockpulse_relay.compose.links import AlertLinks, alert_links
from dockpulse_relay.compose.parts import ChartImage, embed_charts, what_to_do_html, what_to_do_text
from dockpulse_relay.compose.text import body_value, header_value, link_ready, runbook
from dockpulse_relay.model import Alert, Entry, MailPlan, NewMail, event_time_text

# RFC 5322's line limit: a subject of up to SUBJECT_LIMIT characters stays on one line.
WIRE_POLICY = SMTP.clone(max_line_length=998)


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
    """What happened while mails about this alert were held by the cooldown, plainly first:
    `went down 4 times in 10 min, down now; came back 3 times; 7 changes held back ...`."""
    if not entry.held:
        return ""
    down = sum(change.status == "firing" for change in entry.changes)
    up = len(entry.changes) - down
    span = _span(entry.changes)
    within = f" in {span}" if span else ""
    told = f"went down {_times(down)}{within}" if down else f"came back {_times(up)}{within}"
    now = "down now" if entry.alert.status == "firing" else "up now (resolved)"
    changes = len(entry.changes)
    return (
        f"{told}, {now}; came back {_times(up)}; {changes} change{'s' if changes != 1 else ''} "
        f"held back by the cooldown, first change {entry.first_change}, last change "
        f"{entry.last_change}"
    )


def _span(changes: list[Alert]) -> str:
    """How long the changes took, first to last (`10 min`, `45 s`); "" when unknown or none."""
    try:
        moments = [datetime.fromisoformat(event_time_text(change)) for change in changes]
        seconds = (max(moments) - min(moments)).total_seconds()
    except (ValueError, TypeError):
        return ""
    if seconds <= 0:
        return ""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def external_url(alert: Alert) -> str:
    """Alertmanager's externalURL from the notification, if it is a plain http(s) URL; else ""
    (no silence links rather than a link anywhere else)."""
    url = alert.external_url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return ""
    if any(char.isspace() or unicodedata.category(char)[0] == "C" for char in url):
        return ""
    return url


def links_of(
    alert: Alert, prometheus_url: str, grafana_url: str | None, window: float, now: float
) -> AlertLinks:
    """The alert's links; no silence links when the notification had no usable externalURL."""
    silence_base = external_url(alert)
    links = alert_links(alert, silence_base or "http://-", prometheus_url, grafana_url, window, now)
    return links if silence_base else replace(links, silence_alert="", silence_container=None)


@dataclass(frozen=True)
class Section:
    """One alert of a mail: its facts and, while it fires, its links and chart."""

    entry: Entry
    links: AlertLinks | None = None  # firing alerts: what to do
    chart: ChartImage | None = None
    context: ContainerContext | None = None  # why the container went down (the exporter's)
    ready: Alert | None = None  # firing alerts: the alert cleaned once (compose/text.py)

    @property
    def actionable(self) -> bool:
        return self.links is not None


def sections(
    plan: MailPlan,
    prometheus_url: str,
    now: float,
    charts: Sequence[Chart | None] | None = None,
    grafana_url: str | None = None,
    chart_window: float = DEFAULT_WINDOW_SECONDS,
    contexts: Sequence[ContainerContext | None] | None = None,
) -> list[Section]:
    """A section per entry; firing ones get links, their chart (`charts[i]`, if given) and
    their container's context (`contexts[i]`)."""
    found = []
    for index, entry in enumerate(plan.entries):
        if entry.alert.status != "firing":
            found.append(Section(entry))
            continue
        alert = link_ready(entry.alert)
        links = links_of(alert, prometheus_url, grafana_url, chart_window, now)
        chart = charts[index] if charts is not None and index < len(charts) else None
        context = contexts[index] if contexts is not None and index < len(contexts) else None
        image = ChartImage.of(chart) if chart is not None else None
        found.append(Section(entry, links, image, context, ready=alert))
    return found


def _facts(section: Section, prometheus_url: str) -> list[tuple[str, str]]:
    entry = section.entry
    alert = entry.alert
    notes = alert.annotations
    # Firing alerts have the runbook and the Prometheus link in their "what to do" section.
    linked = not section.actionable
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
        ("Runbook", runbook(alert) if linked else ""),
        ("Prometheus", prometheus_link(alert, prometheus_url) if linked else ""),
        ("Fingerprint", alert.fingerprint),
    ]
    return [(name, body_value(text)) for name, text in facts if text]


def _text(title: str, parts: list[Section], prometheus_url: str) -> str:
    lines = [title, "=" * min(len(title), 78), ""]
    for section in parts:
        lines += [f"{name + ':':<13}{text}" for name, text in _facts(section, prometheus_url)]
        if section.context is not None:
            lines += ["", *context_text(section.context).splitlines()]
        if section.links is not None and section.ready is not None:
            to_do = what_to_do_text(
                section.ready, section.links, section.chart, hints(section.context)
            )
            lines += ["", *to_do.splitlines()]
        lines.append("")
    lines.append("-- dockpulse-relay")
    return "\n".join(lines) + "\n"


def _html(title: str, parts: list[Section], prometheus_url: str) -> str:
    blocks = []
    for section in parts:
        rows = []
        for name, text in _facts(section, prometheus_url):
            value = html.escape(text)
            if name == "Prometheus":
                value = f'<a href="{value}">open in Prometheus</a>'
            elif name == "History":
                value = f"<strong>{value}</strong>"
            rows.append(f"<tr><th align='left'>{name}</th><td>{value}</td></tr>")
        block = f"<table cellpadding='3'>{''.join(rows)}</table>"
        why = context_html(section.context) if section.context is not None else ""
        if section.links is not None and section.ready is not None:
            hinted = hints(section.context)
            block += what_to_do_html(section.ready, section.links, section.chart, hinted, why)
        else:
            block += why
        blocks.append(block + "<hr>")
    return (
        "<html><body style='font-family:sans-serif'>"
        f"<h2>{html.escape(title)}</h2>{''.join(blocks)}"
        "<p><small>dockpulse-relay</small></p></body></html>\n"
    )


def new_message_id(now: float) -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now))}-{uuid.uuid4().hex[:12]}"


def build_message(
    title: str,
    kind: str,
    text: str,
    html_body: str,
    sender: str,
    recipients: list[str],
    now: float,
    images: Sequence[ChartImage] = (),
) -> tuple[str, bytes]:
    """(message id, the RFC 5322 bytes with CRLF line ends, as the wire wants); `images` go
    inline (cid:) and attached."""
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
    embed_charts(message, images)
    return token, message.as_bytes(policy=WIRE_POLICY)


def compose(
    plan: MailPlan,
    sender: str,
    recipients: list[str],
    prometheus_url: str,
    now: float,
    *,
    charts: Sequence[Chart | None] | None = None,
    grafana_url: str | None = None,
    chart_window: float = DEFAULT_WINDOW_SECONDS,
    actionable: bool = True,
    contexts: Sequence[ContainerContext | None] | None = None,
) -> NewMail:
    """The mail for a plan, ready to store and send byte for byte.

    Firing alerts get a "what to do" section (runbook, silence, graph and dashboard links) and
    their chart, `charts[i]` for `plan.entries[i]` (None: no chart section), and why their
    container went down, `contexts[i]` (None: no such section). `actionable=False`
    leaves all that out: the plain mail, for when the extras cannot be composed.
    """
    title = subject(plan)
    entries = plan.entries
    if actionable:
        parts = sections(plan, prometheus_url, now, charts, grafana_url, chart_window, contexts)
    else:
        parts = [Section(entry) for entry in entries]
    token, message = build_message(
        title,
        plan.kind,
        _text(title, parts, prometheus_url),
        _html(title, parts, prometheus_url),
        sender,
        recipients,
        now,
        [section.chart for section in parts if section.chart is not None],
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
