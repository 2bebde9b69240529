"""Firing mails through the real dispatcher: the graph, the "what to do" section and the silence
links are in them, and nothing about the graph can delay a mail past the budget or lose it.

Prometheus is real (an hour of history backfilled by promtool), or a port nobody listens on
(down), or a socket that accepts and never answers (stuck), or a server that answers some
queries at once and holds others (a digest's graph being fetched).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest

import dockpulse_relay.compose.composer as composer
from dockpulse_relay.app import Dispatcher
from dockpulse_relay.compose.chart import LEFT_OUT_FOR_CRITICAL
from dockpulse_relay.config import RelayConfig
from dockpulse_relay.deliver.backends import OutboxBackend
from dockpulse_relay.intake.payload import parse_notification
from dockpulse_relay.metrics import RelayMetrics
from dockpulse_relay.model import Alert
from dockpulse_relay.store.open import open_store
from testkit.helpers import free_port, wait_until
from testkit.local_stack import LocalStack, Service
from testkit.mail import outbox_messages
from testkit.prometheus_history import prometheus_with_history
from testkit.relay_process import RelayProcess
from tests.relay.payloads import alert, notification

HOST = "host1:9487"
EXPR = (
    "dockpulse:container_memory_percent"
    " > on (instance, name) dockpulse:container_memory_threshold_percent"
)
CONTAINERS = ("web", "db", "cache")
# Graphs from a live Prometheus get time enough on a loaded machine (the budget's own tests use
# a stuck or absent one).
DRAW_BUDGET = 15.0


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    now = time.time()
    stamps = [now - 3600 + 30 * step for step in range(121)]
    history = {}
    for name in CONTAINERS:
        labels = f'instance="{HOST}",name="{name}"'
        history[f"dockpulse:container_memory_percent{{{labels}}}"] = [
            (t, 30 + 50 * (t - stamps[0]) / 3600) for t in stamps
        ]
        history[f"dockpulse:container_memory_threshold_percent{{{labels}}}"] = [
            (t, 50.0) for t in stamps
        ]
    with LocalStack(tmp_path_factory.mktemp("actions")) as stack:
        yield prometheus_with_history(stack, history)


def memory_alert(container: str, severity: str = "critical") -> dict[str, object]:
    item = alert("ContainerHighMemory", container, severity, runbook=f"docker stats {container}")
    item["labels"] = {**item["labels"], "instance": HOST}  # type: ignore[dict-item]
    item["generatorURL"] = f"http://prometheus-1:9090/graph?g0.expr={quote(EXPR)}&g0.tab=1"
    return item


def dispatcher(tmp_path: Path, prometheus_url: str, **settings: object) -> Dispatcher:
    config = RelayConfig(
        store=tmp_path / "relay.db",
        outbox_dir=tmp_path / "outbox",
        prometheus_url=prometheus_url,
        buffer_timeout=0.001,
        **settings,
    )
    store = open_store(config.store)
    return Dispatcher(store, OutboxBackend(config.outbox_dir), config, RelayMetrics(store.depth))


def deliver(relay: Dispatcher, body: dict[str, object]) -> list[EmailMessage]:
    """Store the notification as the webhook does, run one pass; the mails of the outbox."""
    relay.store.record(parse_notification(json.dumps(body).encode()), time.time())
    relay.run_once(time.time() + 1)
    return outbox_messages(relay.config.outbox_dir)


def parts(mail: EmailMessage) -> tuple[str, str]:
    text = mail.get_body(preferencelist=("plain",)).get_content()
    return text, mail.get_body(preferencelist=("html",)).get_content()


def test_a_critical_mail_carries_its_graph_links_and_what_to_do(
    tmp_path: Path, prometheus: Service
) -> None:
    relay = dispatcher(
        tmp_path, prometheus.url, grafana_url="http://grafana:3000", chart_budget=DRAW_BUDGET
    )
    (mail,) = deliver(relay, notification(memory_alert("web")))
    assert mail.get_content_type() == "multipart/mixed"
    (attachment,) = list(mail.iter_attachments())
    assert attachment.get_content_type() == "image/png"
    related = mail.get_body(preferencelist=("related",))
    assert related is not None
    (inline,) = [part for part in related.iter_parts() if part.get_content_maintype() == "image"]
    assert inline.get_content() == attachment.get_content()
    text, html = parts(mail)
    assert f'src="cid:{inline["Content-ID"].strip("<>")}"' in html
    assert "Graph: attached as ContainerHighMemory-web.png" in text
    assert "docker stats web" in text and "docker stats web" in html
    assert "Silence this alert: http://alertmanager:9093/#/silences/new?filter=" in text
    assert "Silence this container for 1 h: http://alertmanager:9093/#/silences/new?" in text
    assert f"Graph in Prometheus: {prometheus.url}/graph?g0.expr=" in text
    assert "Container dashboard: http://grafana:3000/d/dockpulse-container/" in text
    for label in ("Silence this alert", "Graph in Prometheus", "Container dashboard"):
        assert f">{label}</a>" in html


def test_a_digest_has_a_graph_per_alert_up_to_the_cap(tmp_path: Path, prometheus: Service) -> None:
    relay = dispatcher(tmp_path, prometheus.url, charts_per_digest=2, chart_budget=DRAW_BUDGET)
    body = notification(*(memory_alert(name, "warning") for name in CONTAINERS))
    (digest,) = deliver(relay, body)
    assert digest["X-Dockpulse-Kind"] == "digest"
    attached = [part.get_filename() for part in digest.iter_attachments()]
    assert attached == ["ContainerHighMemory-web.png", "ContainerHighMemory-db.png"]
    text, html = parts(digest)
    assert "graph left out: a mail carries at most 2 graphs" in text
    assert html.count('src="cid:') == 2


def test_prometheus_down_the_mail_goes_without_graph_and_says_why(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    relay = dispatcher(tmp_path, down)
    (mail,) = deliver(relay, notification(memory_alert("web")))
    assert mail.get_content_type() == "multipart/alternative"  # no image
    for part in parts(mail):
        assert f"graph unavailable: Prometheus at {down} is unreachable" in part
        assert "Silence this alert" in part


def test_a_stuck_prometheus_costs_the_mail_its_graph_not_the_mail(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as stuck:  # accepts, never answers
        relay = dispatcher(tmp_path, f"http://127.0.0.1:{stuck.getsockname()[1]}", chart_budget=1.0)
        body = notification(memory_alert("web"), memory_alert("db", "warning"))
        mails = deliver(relay, body)
    assert sorted(mail["X-Dockpulse-Kind"] for mail in mails) == ["critical", "digest"]
    texts = {mail["X-Dockpulse-Kind"]: parts(mail)[0] for mail in mails}
    assert "graph unavailable: Prometheus did not answer within" in texts["critical"]
    # One budget for the pass: the digest's graph is not waited for again.
    assert "graph unavailable: the 1 s for graphs were spent" in texts["digest"]


def test_a_failing_chart_or_link_never_loses_the_mail(tmp_path: Path, monkeypatch) -> None:
    """Stand-ins: chart drawing and the extras are made to fail (no known input breaks them)."""

    def broken_charts(*args: object, **kwargs: object) -> list[object]:
        raise RuntimeError("matplotlib exploded")

    monkeypatch.setattr(composer, "alert_charts", broken_charts)
    relay = dispatcher(tmp_path / "charts", f"http://127.0.0.1:{free_port()}")
    (mail,) = deliver(relay, notification(memory_alert("web")))
    assert "graph unavailable: RuntimeError" in parts(mail)[0]

    def broken_links(*args: object, **kwargs: object) -> object:
        raise ValueError("cannot link this")

    monkeypatch.setattr("dockpulse_relay.compose.message.links_of", broken_links)
    relay = dispatcher(tmp_path / "links", f"http://127.0.0.1:{free_port()}")
    (mail,) = deliver(relay, notification(memory_alert("web")))
    text, _ = parts(mail)
    assert "ContainerHighMemory" in text and "What to do" not in text  # the plain mail
    assert relay.store.depth()["dead_letters"] == 0


def test_silence_links_only_for_an_http_external_url(tmp_path: Path) -> None:
    relay = dispatcher(tmp_path, f"http://127.0.0.1:{free_port()}")
    body = notification(memory_alert("web"))
    body["externalURL"] = "javascript:alert(1)"
    (mail,) = deliver(relay, body)
    for part in parts(mail):
        assert "javascript:" not in part
        assert "Silence this alert" not in part
        assert "Graph in Prometheus" in part


def test_the_external_url_is_kept_with_the_alert_and_old_rows_still_load(tmp_path: Path) -> None:
    store = open_store(tmp_path / "relay.db")
    body = notification(memory_alert("web"))
    store.record(parse_notification(json.dumps(body).encode()), time.time())
    (buffered,) = store.buffered(time.time(), warnings_received_before=time.time())
    assert buffered.alert.external_url == "http://alertmanager:9093"
    earlier_release = json.loads(buffered.alert.to_json())
    del earlier_release["external_url"]
    assert Alert.from_json(json.dumps(earlier_release)).external_url == ""


class HeldQueries:
    """A Prometheus stand-in: `query_range` for a query naming `held` waits until released
    (or 30 s), any other answers at once with no data. `asked` is set when a held one came."""

    def __init__(self, held: str) -> None:
        self.asked = threading.Event()
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if held in self.path:
                    outer.asked.set()
                    outer.release.wait(30)
                body = b'{"status":"success","data":{"resultType":"matrix","result":[]}}'
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the relay gave up on this query (it was held)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.sqlite_only
def test_a_critical_alert_never_waits_for_a_digests_graphs(start_relay) -> None:
    """A critical alert that comes in while the relay fetches a digest's graphs (Prometheus
    slow on that query) is mailed at once, not after the rest of the digest's budget: the
    digest's graph is left out, and the digest says so."""
    prometheus = HeldQueries("slow_series")
    try:
        relay: RelayProcess = start_relay(PROMETHEUS_URL=prometheus.url, CHART_BUDGET="8s")
        warning = alert("ContainerHighMemory", "cache", "warning")
        warning["generatorURL"] = f"http://prometheus:9090/graph?g0.expr={quote('slow_series > 1')}"
        assert relay.post(notification(warning)).status_code == 200
        assert prometheus.asked.wait(15), "the digest's graph was never asked for"
        arrived = time.monotonic()
        assert relay.post(notification(alert("ContainerDown", "web"))).status_code == 200
        kinds = lambda: [mail["X-Dockpulse-Kind"] for mail in relay.mails()]  # noqa: E731
        wait_until(lambda: "critical" in kinds(), timeout=15, interval=0.05)
        waited = time.monotonic() - arrived
        wait_until(lambda: "digest" in kinds(), timeout=15)
    finally:
        prometheus.close()
    assert waited < 2.0, f"the critical mail waited {waited:.1f} s (digest's budget 8 s)"
    digest = next(mail for mail in relay.mails() if mail["X-Dockpulse-Kind"] == "digest")
    assert LEFT_OUT_FOR_CRITICAL in parts(digest)[0]
