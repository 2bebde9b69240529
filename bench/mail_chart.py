"""Added latency of the graph in a critical alert mail, end to end: webhook in -> mail in outbox.

Starts a real Prometheus holding an hour of history for 20 containers (backfilled by promtool)
and two `dockpulse-relay` processes (outbox backend, shipped CHART_BUDGET), side by side: one
whose PROMETHEUS_URL is that Prometheus (the mail carries the graph) and one whose Prometheus
is down (connection refused: the mail says why there is no graph). The same critical alert
(a new one each time) is posted to both, interleaved, `--mails` times; the latency is from the
POST to the .eml file's write time. Prints p50/p99 of both and of the difference, then a few
mails through a relay whose Prometheus accepts and never answers (the budget caps the wait).

    .venv/bin/python -m bench.mail_chart [--mails 50] [--budget 2s]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import requests

from testkit.helpers import free_port
from testkit.local_stack import LocalStack
from testkit.prometheus_history import prometheus_with_history
from testkit.relay_process import RelayProcess

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


def webhook(index: int, external_url: str) -> bytes:
    """Alertmanager's notification of a new critical ContainerHighMemory alert (the `bench`
    label makes each one new: no deduplication, no cooldown)."""
    name = f"app-{index % CONTAINERS}"
    labels = {
        "alertname": "ContainerHighMemory",
        "severity": "critical",
        "instance": "host1:9487",
        "name": name,
        "bench": str(index),
    }
    alert = {
        "status": "firing",
        "labels": labels,
        "annotations": {"runbook": f"docker stats {name}", "summary": f"{name} uses much memory"},
        "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 900)),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": f"http://prometheus:9090/graph?g0.expr={quote(EXPR)}&g0.tab=1",
    }
    body = {
        "version": "4",
        "status": "firing",
        "receiver": "critical",
        "externalURL": external_url,
        "alerts": [alert],
    }
    return json.dumps(body).encode()


def mail_latency(
    relay: RelayProcess, token: str, index: int, body: bytes | None = None
) -> tuple[float, bytes]:
    """Seconds from posting the alert (`body`, default `webhook(index)`) to its mail being
    written; the mail."""
    before = set(relay.outbox.glob("*.eml")) if relay.outbox.is_dir() else set()
    posted = time.time()
    answer = requests.post(
        f"{relay.url}/webhook",
        data=body or webhook(index, "http://127.0.0.1:9093"),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=10,
    )
    answer.raise_for_status()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        new = set(relay.outbox.glob("*.eml")) - before if relay.outbox.is_dir() else set()
        if new:
            (path,) = new
            time.sleep(0.01)  # let the backend finish writing it
            return path.stat().st_mtime - posted, path.read_bytes()
        time.sleep(0.002)
    raise SystemExit(f"no mail from {relay.name} within 30 s: see {relay.log}")


def percentiles(samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return f"p50 {cuts[49] * 1000:7.1f} ms   p99 {cuts[98] * 1000:7.1f} ms"


def run(stack: LocalStack, prometheus_url: str, mails: int, budget: str) -> None:
    down_url = f"http://127.0.0.1:{free_port()}"
    settings = {"CHART_BUDGET": budget, "ALERT_COOLDOWN": "1s"}
    with_graph = stack.relay("relay-graph", PROMETHEUS_URL=prometheus_url, **settings)
    no_graph = stack.relay("relay-down", PROMETHEUS_URL=down_url, **settings)
    for relay in (with_graph, no_graph):  # warm up: imports, first chart, connections
        mail_latency(relay, stack.token, 10_000)
    graph, down, sizes = [], [], []
    for index in range(mails):  # interleaved: both see the same machine load
        seconds, mail = mail_latency(with_graph, stack.token, index)
        graph.append(seconds)
        if b"image/png" not in mail:
            raise SystemExit(f"mail {index} has no graph: see {with_graph.log}")
        seconds, plain = mail_latency(no_graph, stack.token, index)
        down.append(seconds)
        if b"graph unavailable" not in plain:
            raise SystemExit(f"mail {index} does not say why it has no graph")
        sizes.append(len(mail) - len(plain))
    added = [b - a for a, b in zip(down, graph, strict=True)]
    print(f"critical mail, webhook in -> mail in outbox, {mails} mails each, budget {budget}")
    print(f"  Prometheus down (no graph)  {percentiles(down)}")
    print(f"  with the graph              {percentiles(graph)}")
    print(
        f"  added by the graph          {percentiles(added)}   "
        f"(+{statistics.median(sizes) / 1024:.0f} KiB per mail)"
    )
    with socket.create_server(("127.0.0.1", 0)) as stalled:  # accepts, never answers
        silent = stack.relay(
            "relay-silent",
            PROMETHEUS_URL=f"http://127.0.0.1:{stalled.getsockname()[1]}",
            **settings,
        )
        waits = [mail_latency(silent, stack.token, index)[0] for index in range(5)]
    print(f"  Prometheus not answering:   max {max(waits):.2f} s over 5 mails (budget {budget})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=50)
    parser.add_argument("--budget", default="2s", help="the relays' CHART_BUDGET")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work, LocalStack(Path(work)) as stack:
        prometheus = prometheus_with_history(stack, history(time.time()))
        run(stack, prometheus.url, args.mails, args.budget)


if __name__ == "__main__":
    main()
