"""Added latency of the graph in an alert mail: building a critical mail with and without it.

Starts a real Prometheus holding an hour of history for 20 containers (backfilled by promtool;
or uses `--prometheus-url`), then builds the same critical mail `--mails` times side by side:
without the chart (text + HTML with the "what to do" section) and with it (query_range, PNG,
inline and attached). Prints p50/p99 of both and of the difference, then the cost when
Prometheus is down (connection refused) and when it never answers (the budget).

    .venv/bin/python bench/mail_chart.py [--mails 50] [--budget 2] [--prometheus-url URL]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import quote

from dockpulse_relay.alerts import Alert
from dockpulse_relay.chart import Chart, alert_chart
from dockpulse_relay.links import alert_links
from dockpulse_relay.mail_parts import ChartImage, embed_charts, what_to_do_html, what_to_do_text
from tests.helpers import free_port
from tests.support.local_stack import LocalStack
from tests.support.prometheus_history import prometheus_with_history

EXPR = (
    "dockpulse:container_memory_percent"
    " > on (instance, name) dockpulse:container_memory_threshold_percent"
)
CONTAINERS = 20


def history(now: float) -> dict[str, list[tuple[float, float]]]:
    stamps = [now - 3600 + 5 * step for step in range(721)]  # the exporter's 5 s scrapes
    series: dict[str, list[tuple[float, float]]] = {}
    for index in range(CONTAINERS):
        labels = f'instance="host1:9487",name="app-{index}"'
        series[f"dockpulse:container_memory_percent{{{labels}}}"] = [
            (t, 20 + index + 40 * (t - stamps[0]) / 3600) for t in stamps
        ]
        series[f"dockpulse:container_memory_threshold_percent{{{labels}}}"] = [
            (t, 50.0) for t in stamps
        ]
    return series


def critical_alert(now: float) -> Alert:
    labels = {
        "alertname": "ContainerHighMemory",
        "severity": "critical",
        "instance": "host1:9487",
        "name": "app-7",
    }
    return Alert(
        fingerprint="bench",
        status="firing",
        starts_at=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now - 900)),
        ends_at="",
        alertname="ContainerHighMemory",
        severity="critical",
        container="app-7",
        labels=labels,
        annotations={"runbook": "docker stats app-7", "summary": "app-7 uses much memory"},
        generator_url=f"http://prometheus:9090/graph?g0.expr={quote(EXPR)}&g0.tab=1",
    )


def build_mail(alert: Alert, prometheus_url: str, chart: Callable[[], Chart] | None) -> bytes:
    links = alert_links(alert, "http://alertmanager:9093", prometheus_url)
    image = ChartImage.of(chart()) if chart else None
    message = EmailMessage()
    message["Subject"] = f"[CRITICAL] 1 alert: {alert.alertname} ({alert.container})"
    message.set_content("Alert: ContainerHighMemory\n" + what_to_do_text(alert, links, image))
    section = what_to_do_html(alert, links, image)
    html = f"<html><body><h2>{alert.alertname}</h2>{section}</body></html>"
    message.add_alternative(html, subtype="html")
    if image is not None:
        embed_charts(message, [image])
    return message.as_bytes()


def percentiles(samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return f"p50 {cuts[49] * 1000:7.1f} ms   p99 {cuts[98] * 1000:7.1f} ms"


def timed(action: Callable[[], object]) -> float:
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def run(prometheus_url: str, mails: int, budget: float, window: float) -> None:
    now = time.time()
    alert = critical_alert(now)

    def chart() -> Chart:
        return alert_chart(prometheus_url, alert, window=window, budget=budget)

    cold = time.perf_counter()
    first = chart()
    cold = time.perf_counter() - cold
    if first.png is None:
        raise SystemExit(f"no chart from {prometheus_url}: {first.reason}")
    plain, with_chart = [], []
    for _ in range(mails):  # interleaved: both see the same machine load
        plain.append(timed(lambda: build_mail(alert, prometheus_url, None)))
        with_chart.append(timed(lambda: build_mail(alert, prometheus_url, chart)))
    added = [b - a for a, b in zip(plain, with_chart, strict=True)]
    size = len(build_mail(alert, prometheus_url, chart)) - len(
        build_mail(alert, prometheus_url, None)
    )
    print(
        f"critical mail, {mails} mails, window {window:g} s, budget {budget:g} s, {prometheus_url}"
    )
    print(f"  first chart of the process (cold)  {cold * 1000:.0f} ms")
    print(f"  without chart   {percentiles(plain)}")
    print(f"  with chart      {percentiles(with_chart)}")
    print(f"  added by chart  {percentiles(added)}   (+{size / 1024:.0f} KiB per mail)")

    down = f"http://127.0.0.1:{free_port()}"
    refused = [timed(lambda: alert_chart(down, alert, budget=budget)) for _ in range(mails)]
    print(f"  Prometheus down (connection refused): {percentiles(refused)}")
    with socket.create_server(("127.0.0.1", 0)) as stalled:  # accepts, never answers
        url = f"http://127.0.0.1:{stalled.getsockname()[1]}"
        waits = [timed(lambda: alert_chart(url, alert, budget=budget)) for _ in range(5)]
    print(f"  Prometheus not answering: max {max(waits):.2f} s over 5 (budget {budget:g} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=50)
    parser.add_argument("--budget", type=float, default=2.0, help="chart time budget, seconds")
    parser.add_argument("--window", type=float, default=3600.0, help="chart window, seconds")
    parser.add_argument("--prometheus-url", help="a running Prometheus with the series above")
    args = parser.parse_args()
    if args.prometheus_url:
        run(args.prometheus_url, args.mails, args.budget, args.window)
        return
    with tempfile.TemporaryDirectory() as work, LocalStack(Path(work)) as stack:
        prometheus = prometheus_with_history(stack, history(time.time()))
        run(prometheus.url, args.mails, args.budget, args.window)


if __name__ == "__main__":
    main()
