"""The alert chart: drawn from a real Prometheus, or a one-line reason within the time budget.

Prometheus starts with an hour of history backfilled by promtool (testkit.prometheus_history),
so `query_range` has data at once. Slow and down Prometheus are real sockets: one that accepts
and never answers, and a port nobody listens on.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
import yaml
from matplotlib.dates import date2num
from PIL import Image

from dockpulse_relay.compose.chart import (
    FIRED_COLOUR,
    LEFT_OUT_FOR_CRITICAL,
    THRESHOLD_COLOUR,
    Chart,
    ChartQuery,
    Line,
    alert_chart,
    alert_charts,
    split_condition,
    unit_of,
)
from dockpulse_relay.compose.links import alert_links
from dockpulse_relay.compose.parts import ChartImage, embed_charts, what_to_do_html, what_to_do_text
from dockpulse_relay.model import Alert
from testkit.helpers import free_port
from testkit.local_stack import LocalStack, Service
from testkit.mail import parse
from testkit.mail_view import (
    SERIES_BLUE,
    chromium,
    colour_pixels,
    find_image,
    html_with_inline_images,
)
from testkit.prometheus_history import prometheus_with_history

REPO = Path(__file__).resolve().parents[2]
NOW = time.time()
FIRED = NOW - 1200
HOST = 'instance="host1:9487"'
MEMORY_RULE = (
    "dockpulse:container_memory_percent\n"
    "> on (instance, name) dockpulse:container_memory_threshold_percent"
)
DOWN_RULE = (
    "max by (instance, name) (container_up) == 0\nand on (instance, name)\n"
    "max by (instance, name) (dockpulse_container_expected_running) == 1"
)
# Tests of what is drawn get time enough on a loaded machine; the budget has tests of its own.
DRAW_BUDGET = 15.0


def stamps() -> list[float]:
    return [NOW - 3600 + 15 * step for step in range(241)]


def history() -> dict[str, list[tuple[float, float]]]:
    """web's memory climbs from 30 % to 80 % past its 50 % threshold; other stays at 10 %."""
    ramp = [(t, 30 + 50 * (t - stamps()[0]) / 3600) for t in stamps()]
    return {
        f'dockpulse:container_memory_percent{{{HOST},name="web"}}': ramp,
        f'dockpulse:container_memory_percent{{{HOST},name="other"}}': [(t, 10.0) for t in stamps()],
        f'dockpulse:container_memory_threshold_percent{{{HOST},name="web"}}': [
            (t, 50.0) for t in stamps()
        ],
        f'dockpulse:container_memory_threshold_percent{{{HOST},name="other"}}': [
            (t, 90.0) for t in stamps()
        ],
        f'container_up{{{HOST},name="web",id="a1"}}': [
            (t, 1.0 if t < FIRED else 0.0) for t in stamps()
        ],
        f'dockpulse_container_expected_running{{{HOST},name="web",id="a1"}}': [
            (t, 1.0) for t in stamps()
        ],
    }


def make_alert(alertname: str, expr: str, container: str = "web") -> Alert:
    labels = {"alertname": alertname, "severity": "warning", "instance": "host1:9487"}
    labels["name"] = container
    return Alert(
        fingerprint="f1",
        status="firing",
        starts_at=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(FIRED)),
        ends_at="",
        alertname=alertname,
        severity="warning",
        container=container,
        labels=labels,
        annotations={"runbook": f"docker stats {container}; look for a leak"},
        generator_url=f"http://prometheus-1:9090/graph?g0.expr={quote(expr)}&g0.tab=1",
    )


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with LocalStack(tmp_path_factory.mktemp("chart")) as stack:
        yield prometheus_with_history(stack, history())


def pixels_of(png: bytes, colour: tuple[int, int, int], tolerance: int = 40) -> int:
    """How many pixels are near `colour` (lines are antialiased): for what a browser shows."""
    return colour_pixels(Image.open(io.BytesIO(png)).convert("RGB"), colour, tolerance)


def drawn(chart: Chart, colour: str | None = None) -> list[Line]:
    """The lines with points in the chart: the series (`colour` None) or those of `colour`."""
    specials = {THRESHOLD_COLOUR, FIRED_COLOUR}
    return [
        line
        for line in chart.lines
        if line.points and (line.colour == colour if colour else line.colour not in specials)
    ]


def legend(chart: Chart) -> list[str]:
    return [line.label for line in chart.lines if not line.label.startswith("_")]


def test_chart_shows_the_series_the_threshold_and_the_firing_moment(prometheus: Service) -> None:
    chart = alert_chart(
        prometheus.url, make_alert("ContainerHighMemory", MEMORY_RULE), now=NOW, budget=DRAW_BUDGET
    )
    assert chart.reason == ""
    assert chart.png is not None
    assert chart.filename == "ContainerHighMemory-web.png"
    image = Image.open(io.BytesIO(chart.png))
    assert (image.format, image.size) == ("PNG", (600, 260))
    (series,) = drawn(chart)  # web's memory, climbing from 30 % to 80 % over the hour
    values = [y for _, y in series.points]
    assert len(values) > 200
    assert values == sorted(values)
    assert 29 < values[0] < 32 and 78 < values[-1] <= 80
    (threshold,) = drawn(chart, THRESHOLD_COLOUR)  # the per-container threshold series
    assert {y for _, y in threshold.points} == {50.0}
    (fired,) = drawn(chart, FIRED_COLOUR)  # a vertical line at the firing moment
    moment = date2num(datetime.fromtimestamp(FIRED, UTC))
    assert all(abs(x - moment) < 1 / 86400 for x, _ in fired.points)
    assert any(label.startswith("fired ") for label in legend(chart))


def test_an_alert_firing_since_before_the_window_has_no_firing_line(prometheus: Service) -> None:
    alert = make_alert("ContainerHighMemory", MEMORY_RULE)
    alert = Alert(**{**alert.__dict__, "starts_at": "2020-01-01T00:00:00+00:00"})
    chart = alert_chart(prometheus.url, alert, now=NOW, budget=DRAW_BUDGET)
    assert chart.png is not None
    assert drawn(chart, FIRED_COLOUR) == []  # no line; the legend says since when
    assert "firing since 2020-01-01 00:00" in legend(chart)


def test_chart_draws_only_the_alerts_container(prometheus: Service) -> None:
    """Both containers' series come back; only web's is drawn (other's stays at 10 %)."""
    one = alert_chart(
        prometheus.url, make_alert("ContainerHighMemory", MEMORY_RULE), now=NOW, budget=DRAW_BUDGET
    )
    (series,) = drawn(one)  # one line, and it is web's ramp
    assert 10.0 not in {y for _, y in series.points}
    assert 29 < series.points[0][1] < 32


def test_chart_of_a_compound_condition_and_a_number_threshold(prometheus: Service) -> None:
    chart = alert_chart(
        prometheus.url, make_alert("ContainerDown", DOWN_RULE), now=NOW, budget=DRAW_BUDGET
    )
    assert chart.png is not None, chart.reason
    (series,) = drawn(chart)  # container_up: 1 until it fired, then 0
    values = [y for _, y in series.points]
    assert values[0] == 1.0 and values[-1] == 0.0
    assert sorted(set(values)) == [0.0, 1.0]
    (threshold,) = drawn(chart, THRESHOLD_COLOUR)  # `== 0`: a horizontal line at 0
    assert {y for _, y in threshold.points} == {0.0}


def test_no_data_gives_a_reason(prometheus: Service) -> None:
    alert = make_alert("ContainerHighMemory", MEMORY_RULE, container="gone")
    chart = alert_chart(prometheus.url, alert, now=NOW, budget=DRAW_BUDGET)
    assert chart.png is None
    assert chart.reason == (
        "graph unavailable: no data for dockpulse:container_memory_percent in the last 1 h"
    )


def test_a_query_prometheus_rejects_gives_its_error(prometheus: Service) -> None:
    chart = alert_chart(
        prometheus.url, make_alert("Broken", "rate(up) > 1"), now=NOW, budget=DRAW_BUDGET
    )
    assert chart.png is None
    assert chart.reason.startswith("graph unavailable: Prometheus rejected the query: ")
    assert "range vector" in chart.reason


def test_an_alert_without_generator_url_gives_a_reason() -> None:
    alert = make_alert("ContainerDown", DOWN_RULE)
    alert = Alert(**{**alert.__dict__, "generator_url": ""})
    chart = alert_chart("http://127.0.0.1:9", alert)
    assert chart == type(chart)(
        None, "graph unavailable: the alert carries no expression (generatorURL)"
    )


def test_prometheus_down_fails_fast_with_a_reason() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    began = time.monotonic()
    chart = alert_chart(url, make_alert("ContainerHighMemory", MEMORY_RULE), budget=2.0)
    assert chart.png is None
    assert chart.reason == f"graph unavailable: Prometheus at {url} is unreachable"
    assert time.monotonic() - began < 2.0


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A server that accepts connections and never answers (Prometheus stuck)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


def test_prometheus_that_does_not_answer_costs_at_most_the_budget(silent_server: str) -> None:
    began = time.monotonic()
    chart = alert_chart(silent_server, make_alert("ContainerHighMemory", MEMORY_RULE), budget=1.5)
    elapsed = time.monotonic() - began
    assert chart.png is None
    assert chart.reason == "graph unavailable: Prometheus did not answer within 1.5 s"
    assert 1.0 <= elapsed < 1.5 + 0.5  # the budget, not requests' own timeout


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("up == 0", ChartQuery("up", "==", threshold_value=0.0)),
        (
            'foo{path=~"a>b"} >= bool 1e3',
            ChartQuery('foo{path=~"a>b"}', ">=", threshold_value=1000.0),
        ),
        (
            MEMORY_RULE,
            ChartQuery(
                "dockpulse:container_memory_percent",
                ">",
                threshold_expr="dockpulse:container_memory_threshold_percent",
            ),
        ),
        (
            "a > on () group_left b",
            ChartQuery("a", ">", threshold_expr="b"),
        ),
        (DOWN_RULE, ChartQuery("max by (instance, name) (container_up)", "==", threshold_value=0)),
        ("rate(x_total[5m])", ChartQuery("rate(x_total[5m])")),
        (
            "(max by (probe) (probe_success) == 0) * on (probe) group_left (name) info",
            ChartQuery("max by (probe) (probe_success)", "==", threshold_value=0.0),
        ),
        ("(a) + (b)", ChartQuery("(a) + (b)")),
        ("sum(rate(x[1m] offset 5m)) < 0.5", ChartQuery("sum(rate(x[1m] offset 5m))", "<", 0.5)),
    ],
)
def test_split_condition(expr: str, expected: ChartQuery) -> None:
    assert split_condition(expr) == expected


@pytest.mark.parametrize(
    ("expr", "unit"),
    [
        ("max by (instance, name) (container_memory_working_set_bytes)", "bytes"),
        ("dockpulse:container_cpu_percent", "percent"),
        ("probe_duration_seconds{probe='x'}", "seconds"),
        ("sum(increase(container_restarts_total[15m]))", ""),
    ],
)
def test_unit_from_the_metric_name(expr: str, unit: str) -> None:
    assert unit_of(expr) == unit


def test_an_expression_without_comparison_is_drawn_as_it_is(prometheus: Service) -> None:
    chart = alert_chart(
        prometheus.url, make_alert("Up", "container_up"), now=NOW, budget=DRAW_BUDGET
    )
    assert chart.png is not None, chart.reason


# --- the chart in a mail, as a person sees it: headless Chromium ---------------------------


def composed_mail(alert: Alert, chart_image: ChartImage) -> EmailMessage:
    """A text + HTML mail with the "what to do" sections and the chart, as message.py will."""
    links = alert_links(alert, "http://alertmanager:9093", "http://prometheus:9090")
    message = EmailMessage()
    message["Subject"] = f"[WARNING] 1 alert: {alert.alertname} ({alert.container})"
    message.set_content(
        "Alert: ContainerHighMemory\n\n" + what_to_do_text(alert, links, chart_image)
    )
    message.add_alternative(
        "<html><body style='margin:0;padding:16px;font-family:sans-serif'>"
        f"<h2>{alert.alertname} on {alert.container}</h2>"
        + what_to_do_html(alert, links, chart_image)
        + "</body></html>",
        subtype="html",
    )
    embed_charts(message, [chart_image])
    return message


def test_the_chart_in_the_mail_is_visible_in_a_browser(prometheus: Service, tmp_path: Path) -> None:
    alert = make_alert("ContainerHighMemory", MEMORY_RULE)
    chart = alert_chart(prometheus.url, alert, now=NOW, budget=DRAW_BUDGET)
    assert chart.png is not None, chart.reason
    sent = composed_mail(alert, ChartImage.of(chart)).as_bytes()
    received = parse(sent)
    assert isinstance(received, EmailMessage)
    page = tmp_path / "mail.html"
    page.write_text(html_with_inline_images(received))
    shot = tmp_path / "mail.png"

    chromium(tmp_path, f"--screenshot={shot}", "--window-size=800,600", page.as_uri())

    screenshot = Image.open(shot).convert("RGB")
    assert screenshot.size == (800, 600)
    picture = Image.open(io.BytesIO(chart.png)).convert("RGB")
    where = find_image(screenshot, picture)
    assert where is not None, "the chart is not in the screenshot (image not resolved?)"
    left, top = where
    shown = screenshot.crop((left, top, left + picture.width, top + picture.height))
    assert shown.size == (600, 260)
    assert shown.tobytes() == picture.tobytes()  # at its own size, not scaled or cut
    assert pixels_of(_png(shown), SERIES_BLUE) > 400  # and not blank
    dom = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert "docker stats web; look for a leak" in dom
    for label in ("Silence this alert", "Silence this container for 1 h", "Graph in Prometheus"):
        assert f">{label}</a>" in dom


def _png(image: Image.Image) -> bytes:
    output = io.BytesIO()
    image.save(output, format="PNG")
    return output.getvalue()


def test_the_mail_carries_the_chart_inline_and_attached(prometheus: Service) -> None:
    alert = make_alert("ContainerHighMemory", MEMORY_RULE)
    chart_image = ChartImage.of(alert_chart(prometheus.url, alert, now=NOW, budget=DRAW_BUDGET))
    message = composed_mail(alert, chart_image)
    received = parse(message.as_bytes())
    assert received.get_content_type() == "multipart/mixed"
    (attachment,) = list(received.iter_attachments())
    assert attachment.get_filename() == "ContainerHighMemory-web.png"
    assert attachment.get_content() == chart_image.chart.png
    related = received.get_body(preferencelist=("related",))
    assert related is not None
    inline = [part for part in related.iter_parts() if part.get_content_type() == "image/png"]
    assert [part["Content-ID"] for part in inline] == [f"<{chart_image.cid}>"]
    html = received.get_body(preferencelist=("html",)).get_content()
    assert f'src="cid:{chart_image.cid}"' in html
    text = received.get_body(preferencelist=("plain",)).get_content()
    assert "Graph: attached as ContainerHighMemory-web.png" in text
    assert "Silence this container for 1 h: http://alertmanager:9093/#/silences/new?filter=" in text


def test_a_mail_without_chart_says_why_in_both_parts() -> None:
    alert = make_alert("ContainerHighMemory", MEMORY_RULE)
    chart_image = ChartImage.of(alert_chart(f"http://127.0.0.1:{free_port()}", alert))
    message = composed_mail(alert, chart_image)
    assert message.get_content_type() == "multipart/alternative"  # nothing attached
    reason = f"graph unavailable: Prometheus at {chart_image.chart.reason.split(' at ')[1]}"
    assert reason.endswith(" is unreachable")
    assert reason in message.get_body(preferencelist=("plain",)).get_content()
    assert reason in message.get_body(preferencelist=("html",)).get_content()


def test_digest_charts_each_alert_and_caps_their_number(prometheus: Service) -> None:
    alerts = [
        make_alert("ContainerHighMemory", MEMORY_RULE),
        make_alert("ContainerDown", DOWN_RULE),
        make_alert("ContainerHighMemory", MEMORY_RULE, container="other"),
    ]
    charts = alert_charts(prometheus.url, alerts, max_charts=2, now=NOW, budget=DRAW_BUDGET)
    assert [chart.png is not None for chart in charts] == [True, True, False]
    assert charts[2].reason == "graph left out: a mail carries at most 2 graphs"


def test_digest_charts_share_one_budget_when_prometheus_is_stuck(silent_server: str) -> None:
    alerts = [make_alert("ContainerHighMemory", MEMORY_RULE, container=f"c{n}") for n in range(4)]
    began = time.monotonic()
    charts = alert_charts(silent_server, alerts, budget=1.5)
    elapsed = time.monotonic() - began
    assert [chart.reason for chart in charts] == [
        "graph unavailable: Prometheus did not answer within 1.5 s",
        *["graph unavailable: the 1.5 s for graphs were spent"] * 3,
    ]
    assert elapsed < 1.5 + 0.5  # once, not four times


def test_digest_charts_stop_at_once_when_cancelled(silent_server: str) -> None:
    """A critical alert came in (the dispatcher sets the event): the chart being fetched and
    the ones not started are left out, long before the budget is spent."""
    alerts = [make_alert("ContainerHighMemory", MEMORY_RULE, container=f"c{n}") for n in range(3)]
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    began = time.monotonic()
    charts = alert_charts(silent_server, alerts, budget=10.0, cancel=cancel)
    elapsed = time.monotonic() - began
    assert [chart.reason for chart in charts] == [LEFT_OUT_FOR_CRITICAL] * 3
    assert elapsed < 1.0


RULES = {
    rule["alert"]: rule["expr"]
    for path in sorted((REPO / "prometheus" / "rules").glob("*.yml"))
    for group in yaml.safe_load(path.read_text())["groups"]
    for rule in group["rules"]
    if "alert" in rule and rule["alert"] != "Watchdog"  # the heartbeat: never mailed, no chart
}


@pytest.mark.parametrize("alertname", sorted(RULES))
def test_every_alert_rule_gives_queries_prometheus_accepts(
    prometheus: Service, alertname: str
) -> None:
    """The series (and threshold) cut from each of our alert expressions are valid PromQL."""
    query = split_condition(RULES[alertname])
    assert query.operator is not None, "no comparison found: no threshold to draw"
    assert query.threshold_value is not None or query.threshold_expr
    for expr in filter(None, (query.series, query.threshold_expr)):
        answer = requests.get(
            f"{prometheus.url}/api/v1/query_range",
            params={"query": expr, "start": NOW - 600, "end": NOW, "step": "60"},
            timeout=10,
        ).json()
        assert answer["status"] == "success", f"{expr}: {answer.get('error')}"


@pytest.mark.parametrize("setting", ["window", "budget"])
def test_a_setting_that_is_not_positive_is_named(setting: str) -> None:
    alert = make_alert("ContainerHighMemory", MEMORY_RULE)
    with pytest.raises(ValueError, match=f"^chart {setting} must be greater than 0, got 0$"):
        alert_chart("http://127.0.0.1:9", alert, **{setting: 0})
