"""The mail the real alert path writes, as a person reads it and acts on it.

Prometheus (an hour of a container's memory climbing past its threshold, backfilled by promtool)
evaluates the repository's ContainerHighMemory rule, Alertmanager (the repository's routing,
`--web.external-url` set) notifies the relay, the relay fetches the graph from that Prometheus
and writes the mail to its outbox. The test opens the mail's HTML part in headless Chromium and
follows its silence link through Alertmanager's API. (The README's screenshot is the demo
stack's: tests/stack/test_compose.py.)
"""

from __future__ import annotations

import io
import re
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
import requests
from PIL import Image

from testkit.helpers import free_port, wait_until
from testkit.local_stack import TEST_RELAY_TIMINGS, LocalStack, copy_rules
from testkit.mail import read_outbox
from testkit.mail_view import (
    SERIES_BLUE,
    chart_as_shown,
    chromium,
    colour_pixels,
)
from testkit.prometheus_history import backfill
from testkit.silences import create_silence, matchers_from_silence_url

HOST, CONTAINER = "host1:9487", "shop-api"
GRAFANA_URL = "http://grafana.example:3000"


def memory_history(now: float) -> dict[str, list[tuple[float, float]]]:
    """shop-api's memory climbs from 35 % to 72 % of its limit over the hour; threshold 50 %."""
    stamps = [now - 3600 + 15 * step for step in range(241)]
    labels = f'instance="{HOST}",name="{CONTAINER}"'
    return {
        f"dockpulse:container_memory_percent{{{labels}}}": [
            (t, 35 + 37 * ((t - stamps[0]) / 3600) ** 2) for t in stamps
        ],
        f"dockpulse:container_memory_threshold_percent{{{labels}}}": [(t, 50.0) for t in stamps],
    }


def real_alert_mail(stack: LocalStack) -> tuple[EmailMessage, str, str]:
    """(the ContainerHighMemory mail, Alertmanager's URL, Prometheus' URL)."""
    backfill(stack.folder("prometheus") / "data", memory_history(time.time()))
    rules = [
        path
        for path in copy_rules(stack.folder("rules"), {"ContainerHighMemory": "0s"})
        if path.endswith("containers.yml")
    ]
    alertmanager_port = free_port()
    prometheus = stack.prometheus(
        {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": rules,
            "alerting": {
                "alertmanagers": [
                    {"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}
                ]
            },
        },
        flags=("--rules.alert.resend-delay=1s",),
    )
    relay = stack.relay(
        **TEST_RELAY_TIMINGS,
        PROMETHEUS_URL=prometheus.url,
        GRAFANA_URL=GRAFANA_URL,
        CHART_BUDGET="15s",  # a loaded machine must not cost this test its graph
    )
    external_url = f"http://127.0.0.1:{alertmanager_port}"
    alertmanager = stack.alertmanager(
        relay.url,
        port=alertmanager_port,
        flags=[f"--web.external-url={external_url}"],
        group_wait="1s",
        group_interval="1s",
    )
    mail = wait_until(
        lambda: next(
            (m for m in read_outbox(relay.outbox) if "ContainerHighMemory" in m.subject), None
        ),
        timeout=60,
    )
    message = mail.message
    assert isinstance(message, EmailMessage)
    return message, alertmanager.url, prometheus.url


def link(text: str, label: str) -> str:
    found = re.search(rf"^\s*{re.escape(label)}: (\S+)", text, re.MULTILINE)
    assert found, f"no {label!r} line in the text part:\n{text}"
    return found.group(1)


@pytest.mark.slow  # Prometheus, Alertmanager, the relay and Chromium, through LocalStack
def test_the_real_alert_mail_shows_its_graph_and_its_silence_link_silences_it(
    tmp_path: Path,
) -> None:
    with LocalStack(tmp_path) as stack:
        message, alertmanager_url, prometheus_url = real_alert_mail(stack)

        # The graph: inline for the HTML part and attached for clients that block images.
        assert message.get_content_type() == "multipart/mixed"
        (attachment,) = list(message.iter_attachments())
        assert attachment.get_filename() == f"ContainerHighMemory-{CONTAINER}.png"
        chart = Image.open(io.BytesIO(attachment.get_content())).convert("RGB")
        assert chart.size == (600, 260)
        text = message.get_body(preferencelist=("plain",)).get_content()
        assert f"Graph: attached as ContainerHighMemory-{CONTAINER}.png" in text
        assert "docker stats shop-api" in text  # the runbook
        assert link(text, "Graph in Prometheus").startswith(f"{prometheus_url}/graph?g0.expr=")
        assert link(text, "Container dashboard").startswith(
            f"{GRAFANA_URL}/d/dockpulse-container/container-detail?"
        )

        # As a person sees it: the chart at its size, not blank, and the links.
        view = tmp_path / "view"
        view.mkdir()
        shown, _ = chart_as_shown(message, chart, view, window="760,800")
        assert colour_pixels(shown, SERIES_BLUE) > 400, "the series is not drawn"
        dom = chromium(view, "--dump-dom", (view / "mail.html").as_uri())
        for label in (
            "Silence this alert",
            "Silence this container for 1 h",
            "Graph in Prometheus",
            "Container dashboard",
        ):
            assert f">{label}</a>" in dom

        # The silence link of this very mail, followed through Alertmanager's API.
        silence_link = link(text, "Silence this alert")
        assert silence_link.startswith(f"{alertmanager_url}/#/silences/new?filter=")
        matchers = matchers_from_silence_url(silence_link)
        assert matchers["alertname"] == "ContainerHighMemory"
        assert matchers["name"] == CONTAINER
        container_link = link(text, "Silence this container for 1 h")
        assert matchers_from_silence_url(container_link) == {"instance": HOST, "name": CONTAINER}
        silence_id = create_silence(alertmanager_url, matchers, duration=600, comment="from mail")

        def silenced() -> bool:
            alerts = requests.get(f"{alertmanager_url}/api/v2/alerts", timeout=5).json()
            mine = [a for a in alerts if a["labels"].get("alertname") == "ContainerHighMemory"]
            return bool(mine) and all(
                a["status"]["state"] == "suppressed" and silence_id in a["status"]["silencedBy"]
                for a in mine
            )

        wait_until(silenced, timeout=20)
