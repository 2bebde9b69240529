"""Why a container went down, from the exporter that watches it, for the alert's mail.

For ContainerDown, ContainerOOMKilled, ContainerRestarting, ContainerUnhealthy and ProbeFailed
(with a `name`), the relay asks the exporter the alert's `instance` names
(`exporter_url`, `http://{instance}` by default: the address Prometheus scrapes) for
`/api/v1/containers/<name>/context`: exit cause, memory, health-check results, recent events,
last log lines (already redacted by the exporter). Fetched at once for every such alert of a
planning pass, alongside the graphs and within the same budget; an exporter slow, away or
refusing leaves a one-line reason in the mail instead, never a late mail.

    pending = ContextFetch.start(alerts, "http://{instance}", max_contexts=5)
    ...  # the graphs are drawn meanwhile
    contexts = pending.collect(deadline)   # ContainerContext or None, one per alert
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from dockpulse_relay.model import Alert

CONTEXT_ALERTS = frozenset(
    {
        "ContainerDown",
        "ContainerOOMKilled",
        "ContainerRestarting",
        "ContainerUnhealthy",
        "ProbeFailed",
    }
)
MAX_BODY_BYTES = 1 << 20
WORKERS = 4
CANCELLED_GRACE_SECONDS = 0.5  # a critical alert waits: contexts nearly in still get this long
TIMED_OUT = "the exporter did not answer within the mail's budget (chart_budget)"
LEFT_OUT_FOR_CRITICAL = "context left out: a critical alert came in and was mailed first"


@dataclass(frozen=True)
class ContainerContext:
    """The exporter's answer (`data`), or None and the one-line `reason` the mail shows."""

    data: dict[str, Any] | None
    reason: str = ""
    source: str = ""  # the exporter asked, host:port


def wants_context(alert: Alert) -> bool:
    labels = alert.labels
    return alert.alertname in CONTEXT_ALERTS and bool(labels.get("name") and labels.get("instance"))


def context_url(exporter_url: str, alert: Alert) -> str:
    """The context route on the exporter of `alert` (`{instance}` in the setting replaced)."""
    base = exporter_url.replace("{instance}", alert.labels["instance"]).rstrip("/")
    return f"{base}/api/v1/containers/{quote(alert.labels['name'], safe='')}/context"


def fetch(session: requests.Session, url: str, timeout: float) -> ContainerContext:
    """GET one context; never raises."""
    where = urlsplit(url).netloc
    try:
        with session.get(url, timeout=timeout, stream=True) as answer:
            body = answer.raw.read(MAX_BODY_BYTES + 1, decode_content=True)
            status = answer.status_code
    except requests.Timeout:
        reason = f"the exporter at {where} did not answer within {timeout:.2g} s"
        return ContainerContext(None, reason, where)
    except requests.ConnectionError:
        return ContainerContext(None, f"the exporter at {where} is unreachable", where)
    except requests.RequestException as exc:
        return ContainerContext(None, f"{type(exc).__name__} from the exporter at {where}", where)
    if len(body) > MAX_BODY_BYTES:
        return ContainerContext(None, f"the exporter at {where} answered too much", where)
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        data = None
    if not isinstance(data, dict):
        return ContainerContext(None, f"the exporter at {where} answered HTTP {status}, not JSON")
    if status != 200:
        error = str(data.get("error") or f"HTTP {status}")
        return ContainerContext(None, f"the exporter at {where}: {error}", where)
    return ContainerContext(data, "", where)


class ContextFetch:
    """Contexts being fetched for a list of alerts, one slot per alert (None: not wanted)."""

    def __init__(self, futures: list[Future[ContainerContext] | ContainerContext | None]) -> None:
        self._futures = futures

    @classmethod
    def start(
        cls,
        alerts: Sequence[Alert | None],
        exporter_url: str,
        max_contexts: int,
        timeout: float,
        auth: tuple[str, str] | None = None,
    ) -> ContextFetch:
        wanted = [
            index
            for index, alert in enumerate(alerts)
            if alert is not None and wants_context(alert)
        ]
        slots: list[Future[ContainerContext] | ContainerContext | None] = [None] * len(alerts)
        if not wanted:
            return cls(slots)
        session = requests.Session()
        session.auth = auth  # the exporter's basic auth (EXPORTER_USERNAME/PASSWORD), if any
        pool = ThreadPoolExecutor(max_workers=min(WORKERS, len(wanted)), thread_name_prefix="ctx")
        for count, index in enumerate(wanted):
            if count >= max_contexts:
                reason = f"context left out: a mail carries at most {max_contexts}"
                slots[index] = ContainerContext(None, reason)
                continue
            alert = alerts[index]
            assert alert is not None
            url = context_url(exporter_url, alert)
            slots[index] = pool.submit(fetch, session, url, timeout)
        pool.shutdown(wait=False)  # its threads end with their requests (each within timeout)
        return cls(slots)

    def collect(
        self, deadline: float, cancel: threading.Event | None = None
    ) -> list[ContainerContext | None]:
        """Each alert's context by `deadline` (monotonic); past it, a reason instead. Once
        `cancel` is set (a critical alert waits), each gets at most a short grace."""
        found: list[ContainerContext | None] = []
        for slot in self._futures:
            if not isinstance(slot, Future):
                found.append(slot)
                continue
            cancelled = cancel is not None and cancel.is_set()
            wait = max(deadline - time.monotonic(), 0.0)
            wait = min(wait, CANCELLED_GRACE_SECONDS) if cancelled else wait
            try:
                found.append(slot.result(timeout=wait))
            except FutureTimeout:
                reason = LEFT_OUT_FOR_CRITICAL if cancelled else TIMED_OUT
                found.append(ContainerContext(None, reason))
        return found
