"""The parts of an alert mail that help act on it: "what to do" and the chart.

For each alert, `what_to_do_text` / `what_to_do_html` give a section for the plain-text and the
HTML part (runbook, silence/graph/dashboard links, the chart or why there is none). Once the
message (text + HTML alternative) is composed, `embed_charts` adds each chart as an inline
image (`cid:`, shown where the HTML refers to it) and as an attachment, for clients that block
inline images.

    chart = ChartImage.of(alert_chart(...))            # new Content-ID per chart
    text += what_to_do_text(alert, links, chart)
    html += what_to_do_html(alert, links, chart)       # <img src="cid:...">
    message.set_content(text); message.add_alternative(html, subtype="html")
    embed_charts(message, [chart])
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid

from dockpulse_relay.compose.chart import DPI, SIZE_INCHES, Chart
from dockpulse_relay.compose.links import AlertLinks
from dockpulse_relay.compose.text import runbook
from dockpulse_relay.model import Alert

CHART_WIDTH, CHART_HEIGHT = round(SIZE_INCHES[0] * DPI), round(SIZE_INCHES[1] * DPI)


@dataclass(frozen=True)
class ChartImage:
    """A chart with the Content-ID the HTML refers to (`cid` without angle brackets)."""

    chart: Chart
    cid: str

    @classmethod
    def of(cls, chart: Chart) -> ChartImage:
        return cls(chart, make_msgid(domain="dockpulse-relay")[1:-1])


def _link_lines(links: AlertLinks) -> list[tuple[str, str]]:
    found = [
        ("Silence this alert", links.silence_alert),
        ("Silence this container for 1 h", links.silence_container),
        ("Graph in Prometheus", links.prometheus_graph),
        ("Container dashboard", links.dashboard),
    ]
    return [(label, url) for label, url in found if url]


def what_to_do_text(
    alert: Alert, links: AlertLinks, chart: ChartImage | None, hints: Sequence[str] = ()
) -> str:
    """The plain-text section: complete without the HTML part or the image; `hints` (what
    the container's context says) first."""
    lines = ["What to do:", *(f"  {hint}" for hint in hints)]
    if runbook(alert):
        lines.append(f"  {runbook(alert)}")
    lines += [f"  {label}: {url}" for label, url in _link_lines(links)]
    if chart is not None and chart.chart.png is not None:
        lines.append(f"  Graph: attached as {chart.chart.filename}")
    elif chart is not None:
        lines.append(f"  {chart.chart.reason}")
    return "\n".join(lines) + "\n"


def what_to_do_html(
    alert: Alert,
    links: AlertLinks,
    chart: ChartImage | None,
    hints: Sequence[str] = (),
    after_chart: str = "",
) -> str:
    """The HTML section: the chart inline (or why not), `after_chart` (HTML: why the container
    went down), the hints, the runbook, the links as buttons. The chart comes first so that
    nothing of varying height above it shifts it off whole pixels."""
    parts = []
    if chart is not None and chart.chart.png is not None:
        parts.append(
            f'<p><img src="cid:{html.escape(chart.cid)}" width="{CHART_WIDTH}" '
            f'height="{CHART_HEIGHT}" alt="Graph of {html.escape(alert.alertname)}" '
            'style="display:block;max-width:100%;height:auto;border:1px solid #ddd"></p>'
        )
    elif chart is not None:
        parts.append(f'<p style="color:#666"><em>{html.escape(chart.chart.reason)}</em></p>')
    parts.append(after_chart)
    parts.append("<h3 style='margin:12px 0 4px'>What to do</h3>")
    parts += [f"<p style='margin:4px 0'><strong>{html.escape(hint)}</strong></p>" for hint in hints]
    if runbook(alert):
        parts.append(f"<p style='margin:4px 0'>{html.escape(runbook(alert))}</p>")
    buttons = " ".join(
        f'<a href="{html.escape(url)}" style="display:inline-block;margin:4px 6px 4px 0;'
        f"padding:6px 10px;border:1px solid #1f6feb;border-radius:4px;color:#1f6feb;"
        f'text-decoration:none">{html.escape(label)}</a>'
        for label, url in _link_lines(links)
    )
    parts.append(f"<p style='margin:4px 0'>{buttons}</p>")
    return "<div class='dockpulse-actions'>" + "".join(parts) + "</div>"


def embed_charts(message: EmailMessage, charts: Sequence[ChartImage]) -> None:
    """Add each chart with a PNG as inline image of the HTML part and as an attachment.

    `message` is a composed text + HTML alternative; the HTML part becomes multipart/related
    and the whole multipart/mixed. Charts without a PNG are skipped (their reason is in the
    text already). ValueError if the message has no HTML part.
    """
    drawn = [chart for chart in charts if chart.chart.png is not None]
    if not drawn:
        return
    body = message.get_body(preferencelist=("related", "html"))
    if body is None:
        raise ValueError("the message has no HTML part to put the charts in")
    for chart in drawn:  # the first turns the HTML part into multipart/related, in place
        body.add_related(
            chart.chart.png,
            maintype="image",
            subtype="png",
            cid=f"<{chart.cid}>",
            filename=chart.chart.filename,
            disposition="inline",
        )
    for chart in drawn:
        message.add_attachment(
            chart.chart.png, maintype="image", subtype="png", filename=chart.chart.filename
        )
