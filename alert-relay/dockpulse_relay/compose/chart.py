"""A small PNG of an alert's series over the last hour, for the mail, within a strict budget.

The alert's expression comes from its `generatorURL` (`g0.expr`). The chart draws the series
behind the alert condition (the expression up to its last comparison), the threshold (a number,
or the series it is compared with) and the moment the alert fired. Prometheus slow, down or
without data means no chart and a one-line reason for the mail, never a delayed mail.

    chart = alert_chart("http://127.0.0.1:9090", alert, window=3600, budget=2.0)
    chart.png or chart.reason  # bytes of the PNG, or "graph unavailable: ..."
"""

from __future__ import annotations

import io
import math
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.dates import DateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, FuncFormatter

from dockpulse_relay.model import Alert

DEFAULT_WINDOW_SECONDS = 3600.0
DEFAULT_BUDGET_SECONDS = 2.0
RENDER_ALLOWANCE_SECONDS = 0.4  # of the budget, kept for drawing the PNG
CANCEL_POLL_SECONDS = 0.05  # how soon a cancelled fetch is given up
SECONDS_ON_AXIS_UNDER = 600.0  # a window this short has seconds on its time axis
LEFT_OUT_FOR_CRITICAL = "graph left out: a critical alert came in and was mailed first"
POINTS = 240  # samples per series: enough for 600 px, small enough to be quick
MAX_SERIES = 6
SIZE_INCHES = (6.0, 2.6)
DPI = 100  # 600 x 260 px
THRESHOLD_COLOUR = "#cc0000"  # outside matplotlib's colour cycle, which the series use
FIRED_COLOUR = "#f0a000"

_COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")
_SET_OPERATORS = ("and", "or", "unless")
_MATCHING = re.compile(
    r"^\s*(?:bool\s+)?(?:(?:on|ignoring)\s*\([^)]*\)\s*)?"
    r"(?:(?:group_left|group_right)\s*(?:\([^)]*\))?\s*)?",
)
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?(?:e[+-]?\d+)?|\.\d+(?:e[+-]?\d+)?|inf|nan)$", re.I)
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = {
    *_SET_OPERATORS,
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
}


@dataclass(frozen=True)
class ChartQuery:
    """What to draw: the series expression and its threshold (a number or an expression)."""

    series: str
    operator: str | None = None
    threshold_value: float | None = None
    threshold_expr: str | None = None


@dataclass(frozen=True)
class Line:
    """One line drawn: its legend label ("_child..." for unlabelled ones), colour and points
    (x as matplotlib dates, or axes fractions for a horizontal line)."""

    label: str
    colour: str
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Chart:
    """A PNG (`png`) and the lines drawn in it, or None and the one-line `reason` the mail shows
    instead."""

    png: bytes | None
    reason: str = ""
    filename: str = "alert.png"
    lines: tuple[Line, ...] = ()


class ChartUnavailable(Exception):
    """No chart for this alert; the message is the line the mail shows."""


def _result(future: Future[Any], seconds: float, cancel: threading.Event | None) -> Any:
    """`future.result` within `seconds`; ChartUnavailable as soon as `cancel` is set."""
    deadline = time.monotonic() + max(seconds, 0.01)
    while True:
        remaining = deadline - time.monotonic()
        if cancel is not None and cancel.is_set():
            raise ChartUnavailable(LEFT_OUT_FOR_CRITICAL)
        try:
            wait = remaining if cancel is None else min(remaining, CANCEL_POLL_SECONDS)
            return future.result(timeout=max(wait, 0.0))
        except FutureTimeout:
            if time.monotonic() >= deadline:
                raise


def expression_from_generator_url(url: str) -> str | None:
    """The PromQL in a Prometheus generatorURL (`/graph?g0.expr=...`), None without one."""
    values = parse_qs(urlsplit(url).query).get("g0.expr")
    return values[0].strip() if values and values[0].strip() else None


def _top_level(expr: str) -> list[tuple[int, str]]:
    """(position, character) of every character outside brackets, strings and braces."""
    found, depth, quote = [], 0, ""
    for index, char in enumerate(expr):
        if quote:
            if char == quote and expr[index - 1] != "\\":
                quote = ""
        elif char in "\"'`":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0:
            found.append((index, char))
    return found


def _split_set_operation(expr: str) -> str:
    """The first operand of a top-level `and`/`or`/`unless` chain (comparisons bind tighter)."""
    outside = {index for index, _ in _top_level(expr)}
    for match in re.finditer(r"\b(and|or|unless)\b", expr):
        if match.start() in outside and (match.start() == 0 or expr[match.start() - 1].isspace()):
            return expr[: match.start()].strip()
    return expr.strip()


def split_condition(expr: str) -> ChartQuery:
    """The series behind an alert expression and what it is compared with.

    `A > 80` -> series A, threshold 80; `A > on (x) B` -> series A, threshold series B;
    `A == 0 and on (x) B == 1` -> series A, threshold 0 (the first condition is the alert's);
    `(A > B) * on (x) group_left (name) C` -> as `A > B`.
    An expression without a top-level comparison is drawn as it is.
    """
    expr = _split_set_operation(expr)
    characters = _top_level(expr)
    positions = {index for index, _ in characters}
    for index, _char in reversed(characters):
        for operator in _COMPARISONS:
            start = index - len(operator) + 1
            if start < 0 or expr[start : index + 1] != operator or start not in positions:
                continue
            if operator in (">", "<") and expr[index + 1 : index + 2] == "=":
                continue
            if expr[start - 1 : start] in "=!<>" and start > 0:
                continue  # the tail of a two-character operator
            left, right = expr[:start].strip(), expr[index + 1 :].strip()
            right = _MATCHING.sub("", right, count=1).strip()
            if not left or not right:
                break
            if _NUMBER.match(right):
                return ChartQuery(left, operator, threshold_value=float(right))
            return ChartQuery(left, operator, threshold_expr=right)
    inner = _leading_group(expr)
    if inner is not None:  # `(A > B) * on (x) group_left (name) info`: the condition inside
        query = split_condition(inner)
        if query.operator is not None:
            return query
    return ChartQuery(expr)


def _leading_group(expr: str) -> str | None:
    """The inside of the parenthesis `expr` starts with, if it does."""
    if not expr.startswith("("):
        return None
    outside = [index for index, _ in _top_level(expr)]
    closing = min((index for index in outside if index > 0), default=len(expr)) - 1
    return expr[1:closing].strip() if expr[closing] == ")" else None


def unit_of(expr: str) -> str:
    """`bytes`, `percent`, `seconds` or `` from the first metric name in the expression."""
    text = re.sub(r"\{[^}]*\}|\"[^\"]*\"|'[^']*'|\[[^\]]*\]", "", expr)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    for match in _NAME.finditer(text):
        name = match.group(0)
        following = text[match.end() :].lstrip()[:1]
        if name in _KEYWORDS or following == "(":
            continue
        for suffix, unit in (("_bytes", "bytes"), ("_percent", "percent"), ("_seconds", "seconds")):
            if name.endswith(suffix) or f"{suffix}_" in name:
                return unit
        return ""
    return ""


def _query_range(
    session: requests.Session,
    base_url: str,
    expr: str,
    start: float,
    end: float,
    step: float,
    timeout: float,
) -> list[dict[str, Any]]:
    answer = session.get(
        f"{base_url}/api/v1/query_range",
        params={"query": expr, "start": start, "end": end, "step": f"{step:.3f}"},
        timeout=timeout,
    )
    try:
        body = answer.json()
    except ValueError:
        raise ChartUnavailable(
            f"graph unavailable: Prometheus answered HTTP {answer.status_code}"
        ) from None
    if body.get("status") != "success":
        error = str(body.get("error", f"HTTP {answer.status_code}")).splitlines()[0]
        raise ChartUnavailable(f"graph unavailable: Prometheus rejected the query: {error}")
    return body["data"]["result"]


def _matches(metric: dict[str, str], labels: dict[str, str]) -> bool:
    """True when every label the series shares with the alert has the alert's value."""
    return all(labels[key] == value for key, value in metric.items() if key in labels)


def _points(series: dict[str, Any]) -> tuple[list[datetime], list[float]]:
    times = [datetime.fromtimestamp(float(stamp), UTC) for stamp, _ in series["values"]]
    return times, [float(value) for _, value in series["values"]]


def _format_iec(value: float, _position: object = None) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.3g} {unit}"
        value /= 1024
    return f"{value:.3g}"


def _format_value(value: float, unit: str) -> str:
    if unit == "bytes":
        return _format_iec(value)
    if unit == "percent":
        return f"{value:.3g} %"
    if unit == "seconds":
        return EngFormatter(unit="s", places=1).format_data(value)
    return f"{value:.4g}"


def _legend_name(metric: dict[str, str], labels: dict[str, str], expr: str) -> str:
    """The series' metric name or expression, and its labels the alert does not have."""
    own = {key: value for key, value in metric.items() if key not in labels and key != "__name__"}
    name = metric.get("__name__") or (expr if len(expr) <= 48 else expr[:47] + "…")
    extra = ", ".join(f"{key}={value}" for key, value in sorted(own.items()))
    return f"{name} {{{extra}}}" if extra else name


def render(
    title: str,
    expr: str,
    series: list[dict[str, Any]],
    unit: str,
    fired_at: datetime | None,
    start: datetime,
    end: datetime,
    threshold_value: float | None = None,
    threshold_series: list[dict[str, Any]] | None = None,
    alert_labels: dict[str, str] | None = None,
) -> tuple[bytes, tuple[Line, ...]]:
    """The PNG: series, threshold (line), the firing moment (vertical line), UTC time axis; and
    the lines as drawn."""
    figure = Figure(figsize=SIZE_INCHES, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for item in series[:MAX_SERIES]:
        times, values = _points(item)
        axes.plot(
            times,
            values,
            linewidth=1.8,
            label=_legend_name(item["metric"], alert_labels or {}, expr),
        )
    threshold_label = "threshold"
    if threshold_value is not None and math.isfinite(threshold_value):
        threshold_label += f" {_format_value(threshold_value, unit)}"
        axes.axhline(threshold_value, color=THRESHOLD_COLOUR, linestyle="--", linewidth=1.4)
        axes.plot([], [], color=THRESHOLD_COLOUR, linestyle="--", label=threshold_label)
    for item in (threshold_series or [])[:1]:
        times, values = _points(item)
        threshold_label += f" {_format_value(values[-1], unit)}"
        axes.step(
            times,
            values,
            where="post",
            color=THRESHOLD_COLOUR,
            linestyle="--",
            linewidth=1.4,
            label=threshold_label,
        )
    if fired_at is not None and start <= fired_at <= end:
        axes.axvline(fired_at, color=FIRED_COLOUR, linewidth=1.4)
        axes.plot([], [], color=FIRED_COLOUR, label=f"fired {fired_at:%H:%M:%S}")
    elif fired_at is not None and fired_at < start:
        axes.plot([], [], color=FIRED_COLOUR, label=f"firing since {fired_at:%Y-%m-%d %H:%M}")
    axes.set_xlim(start, end)
    short = (end - start).total_seconds() <= SECONDS_ON_AXIS_UNDER
    axes.xaxis.set_major_formatter(DateFormatter("%H:%M:%S" if short else "%H:%M"))
    axes.set_xlabel(f"{start:%Y-%m-%d} UTC", fontsize=8)
    if unit == "bytes":
        axes.yaxis.set_major_formatter(FuncFormatter(_format_iec))
    elif unit == "percent":
        axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _p: f"{value:.0f} %"))
    elif unit == "seconds":
        axes.yaxis.set_major_formatter(EngFormatter(unit="s"))
    axes.set_ylabel(
        {"bytes": "bytes", "percent": "percent", "seconds": "seconds"}.get(unit, ""), fontsize=8
    )
    axes.tick_params(labelsize=8)
    axes.grid(True, alpha=0.3)
    axes.set_title(title, fontsize=10, loc="left")
    axes.legend(fontsize=7, loc="upper left", framealpha=0.8)
    output = io.BytesIO()
    figure.savefig(output, format="png", dpi=DPI)
    drawn = tuple(
        Line(
            str(line.get_label()),
            to_hex(line.get_color()),
            tuple((float(x), float(y)) for x, y in line.get_xydata()),
        )
        for line in axes.get_lines()
    )
    return output.getvalue(), drawn


def _check_positive(**settings: float) -> None:
    for name, value in settings.items():
        if not value > 0:
            raise ValueError(f"chart {name} must be greater than 0, got {value!r}")


def _title(alert: Alert) -> str:
    where = f" · {alert.container}" if alert.container else ""
    return f"{alert.alertname}{where}"


def _fired_at(alert: Alert) -> datetime | None:
    try:
        moment = datetime.fromisoformat(alert.starts_at)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def alert_chart(
    prometheus_url: str,
    alert: Alert,
    *,
    window: float = DEFAULT_WINDOW_SECONDS,
    budget: float = DEFAULT_BUDGET_SECONDS,
    now: float | None = None,
    session: requests.Session | None = None,
    cancel: threading.Event | None = None,
) -> Chart:
    """The chart of `alert` over the last `window` seconds, or the reason there is none.

    Never takes much longer than `budget` seconds: both queries run at once and are abandoned
    when the budget (less a moment kept for drawing) is spent, or as soon as `cancel` is set.
    """
    _check_positive(window=window, budget=budget)
    began = time.monotonic()
    filename = f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', _title(alert).replace(' · ', '-'))}.png"
    expr = expression_from_generator_url(alert.generator_url)
    if expr is None:
        return Chart(None, "graph unavailable: the alert carries no expression (generatorURL)")
    query = split_condition(expr)
    end = time.time() if now is None else now
    start = end - window
    step = max(window / POINTS, 1.0)
    base_url = prometheus_url.rstrip("/")
    fetch_budget = max(budget - RENDER_ALLOWANCE_SECONDS, 0.1)
    own_session = session is None
    http = session or requests.Session()
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="chart")
    try:
        futures: list[Future[list[dict[str, Any]]]] = [
            pool.submit(_query_range, http, base_url, text, start, end, step, fetch_budget)
            for text in (query.series, query.threshold_expr)
            if text
        ]
        results = []
        for future in futures:
            remaining = fetch_budget - (time.monotonic() - began)
            results.append(_result(future, remaining, cancel))
    except (FutureTimeout, requests.Timeout):
        return Chart(None, f"graph unavailable: Prometheus did not answer within {budget:.2g} s")
    except requests.ConnectionError:
        return Chart(None, f"graph unavailable: Prometheus at {base_url} is unreachable")
    except requests.RequestException as exc:
        return Chart(None, f"graph unavailable: {type(exc).__name__} from Prometheus")
    except ChartUnavailable as exc:
        return Chart(None, str(exc))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        if own_session:
            http.close()
    series = [item for item in results[0] if _matches(item["metric"], alert.labels)]
    if not series:
        hours = f"{window / 3600:g} h" if window >= 3600 else f"{window / 60:g} min"
        return Chart(None, f"graph unavailable: no data for {query.series} in the last {hours}")
    threshold = (
        [item for item in results[1] if _matches(item["metric"], alert.labels)]
        if len(results) > 1
        else []
    )
    png, lines = render(
        _title(alert),
        query.series,
        series,
        unit_of(query.series),
        _fired_at(alert),
        datetime.fromtimestamp(start, UTC),
        datetime.fromtimestamp(end, UTC),
        threshold_value=query.threshold_value,
        threshold_series=threshold,
        alert_labels=alert.labels,
    )
    return Chart(png, "", filename, lines)


def alert_charts(
    prometheus_url: str,
    alerts: Sequence[Alert],
    *,
    window: float = DEFAULT_WINDOW_SECONDS,
    budget: float = DEFAULT_BUDGET_SECONDS,
    deadline: float | None = None,
    max_charts: int = 10,
    now: float | None = None,
    cancel: threading.Event | None = None,
    auth: tuple[str, str] | None = None,
    verify: bool | str = True,
) -> list[Chart]:
    """One chart (or reason) per alert of a digest, all within one `budget`, in order.

    Alerts past `max_charts`, or reached when too little of the budget is left, get a reason
    instead: a stuck Prometheus costs the digest `budget` once, not once per alert (several
    digests share one budget through `deadline`, a monotonic time that replaces now + budget). Once
    `cancel` is set, the chart being fetched and the ones not yet drawn get a reason too.
    `auth` and `verify` (a CA file): a Prometheus behind its web config.
    """
    _check_positive(window=window, budget=budget, max_charts=max_charts)
    deadline = time.monotonic() + budget if deadline is None else deadline
    charts = []
    with requests.Session() as session:
        session.auth, session.verify = auth, verify
        session.trust_env = verify is True  # else REQUESTS_CA_BUNDLE would replace the CA
        for index, alert in enumerate(alerts):
            remaining = deadline - time.monotonic()
            if index >= max_charts:
                reason = f"graph left out: a mail carries at most {max_charts} graphs"
                charts.append(Chart(None, reason))
            elif cancel is not None and cancel.is_set():
                charts.append(Chart(None, LEFT_OUT_FOR_CRITICAL))
            elif remaining < RENDER_ALLOWANCE_SECONDS + 0.1:
                reason = f"graph unavailable: the {budget:g} s for graphs were spent"
                charts.append(Chart(None, reason))
            else:
                charts.append(
                    alert_chart(
                        prometheus_url,
                        alert,
                        window=window,
                        budget=remaining,
                        now=now,
                        session=session,
                        cancel=cancel,
                    )
                )
    return charts
