"""The links an alert mail offers: silence it, see its graph, open the container's dashboard.

Silence links open Alertmanager's "new silence" form prefilled with matchers (the UI takes
`#/silences/new?filter={label="value", ...}&comment=...`); the form still needs a click on
"Create", so a mail scanner that follows links never silences anything.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from dockpulse_relay.compose.chart import DEFAULT_WINDOW_SECONDS, expression_from_generator_url
from dockpulse_relay.model import CONTAINER_LABELS, Alert

CONTAINER_SILENCE_SECONDS = 3600.0
# grafana/dashboards/container-detail.json: its uid and template variables (a test checks them).
DASHBOARD_UID = "dockpulse-container"
DASHBOARD_SLUG = "container-detail"
DASHBOARD_INSTANCE_VARIABLE = "instance"
DASHBOARD_CONTAINER_VARIABLE = "container"

_URI_COMPONENT_SAFE = "-_.!~*'()"  # what JavaScript's encodeURIComponent leaves alone


@dataclass(frozen=True)
class AlertLinks:
    """Every link of one alert; None where it does not apply (no container, no Grafana)."""

    silence_alert: str
    silence_container: str | None
    prometheus_graph: str
    dashboard: str | None


def alert_matchers(alert: Alert) -> dict[str, str]:
    """Matchers for exactly this alert: all its labels."""
    return dict(sorted(alert.labels.items()))


def container_matchers(alert: Alert) -> dict[str, str] | None:
    """Matchers for every alert of the alert's container (its host and name), None without one."""
    key = next((name for name in CONTAINER_LABELS if alert.labels.get(name)), None)
    if key is None or key == "job":
        return None
    matchers = {key: alert.labels[key]}
    if alert.labels.get("instance"):
        matchers["instance"] = alert.labels["instance"]
    return dict(sorted(matchers.items()))


def filter_text(matchers: dict[str, str]) -> str:
    """Alertmanager's filter syntax: `{alertname="X", name="web"}` (values JSON-quoted)."""
    return "{" + ", ".join(f"{key}={json.dumps(value)}" for key, value in matchers.items()) + "}"


def silence_form_url(external_url: str, matchers: dict[str, str], comment: str = "") -> str:
    """Alertmanager's new-silence form with `matchers` (and `comment`) filled in."""
    query = "filter=" + quote(filter_text(matchers), safe=_URI_COMPONENT_SAFE)
    if comment:
        query += "&comment=" + quote(comment, safe=_URI_COMPONENT_SAFE)
    return f"{external_url.rstrip('/')}/#/silences/new?{query}"


def prometheus_graph_url(
    prometheus_url: str, alert: Alert, window: float = DEFAULT_WINDOW_SECONDS
) -> str:
    """Prometheus' graph tab for the alert's expression over `window` (its alerts page without)."""
    expr = expression_from_generator_url(alert.generator_url)
    if expr is None:
        return f"{prometheus_url.rstrip('/')}/alerts"
    query = urlencode({"g0.expr": expr, "g0.tab": "0", "g0.range_input": _duration(window)})
    return f"{prometheus_url.rstrip('/')}/graph?{query}"


def dashboard_url(
    grafana_url: str, alert: Alert, window: float = DEFAULT_WINDOW_SECONDS, now: float | None = None
) -> str | None:
    """Grafana's container-detail dashboard for the alert's container, from `window` before the
    alert fired (or before now, if later) to now; None when the alert names no container."""
    if not alert.container or "name" not in alert.labels:
        return None
    end = time.time() if now is None else now
    start = min(end - window, _epoch(alert.starts_at, end) - window / 4)
    params = {
        "orgId": "1",
        f"var-{DASHBOARD_INSTANCE_VARIABLE}": alert.labels.get("instance", "$__all"),
        f"var-{DASHBOARD_CONTAINER_VARIABLE}": alert.labels["name"],
        "from": str(int(start * 1000)),
        "to": str(int(end * 1000)),
    }
    return f"{grafana_url.rstrip('/')}/d/{DASHBOARD_UID}/{DASHBOARD_SLUG}?{urlencode(params)}"


def alert_links(
    alert: Alert,
    external_url: str,
    prometheus_url: str,
    grafana_url: str | None = None,
    window: float = DEFAULT_WINDOW_SECONDS,
    now: float | None = None,
) -> AlertLinks:
    """All links of `alert`; `external_url` is the webhook's `externalURL` (Alertmanager)."""
    container = container_matchers(alert)
    silence_container = None
    if container is not None:
        comment = f"{alert.container}: silenced for 1 h from an alert mail (set Duration to 1h)"
        silence_container = silence_form_url(external_url, container, comment)
    return AlertLinks(
        silence_alert=silence_form_url(
            external_url, alert_matchers(alert), f"{alert.alertname} on {alert.container or '-'}"
        ),
        silence_container=silence_container,
        prometheus_graph=prometheus_graph_url(prometheus_url, alert, window),
        dashboard=dashboard_url(grafana_url, alert, window, now) if grafana_url else None,
    )


def _duration(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def _epoch(moment: str, default: float) -> float:
    try:
        parsed = datetime.fromisoformat(moment)
    except ValueError:
        return default
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
