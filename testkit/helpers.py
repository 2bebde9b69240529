"""Small helpers shared by the tests: ports, waiting, reading Prometheus exposition."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

import requests
from prometheus_client.parser import text_string_to_metric_families

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], T], timeout: float = 20.0, interval: float = 0.2) -> T:
    """Call `check` until it returns something truthy; fail with its last value on timeout."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (requests.RequestException, OSError) as exc:
            last = exc  # type: ignore[assignment]
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


Samples = list[tuple[str, dict[str, str], float]]


def scrape(url: str, auth: tuple[str, str] | None = None) -> Samples:
    """Every sample at a /metrics URL as (name, labels, value); `auth`: basic auth."""
    answer = requests.get(url, timeout=5, auth=auth)
    answer.raise_for_status()
    text = answer.text
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def values(samples: Samples, metric: str, /, **labels: str) -> list[float]:
    """Values of the samples called `metric` whose labels include `labels`."""
    return [
        value
        for sample_name, sample_labels, value in samples
        if sample_name == metric and all(sample_labels.get(k) == v for k, v in labels.items())
    ]


def value(samples: Samples, metric: str, /, **labels: str) -> float | None:
    found = values(samples, metric, **labels)
    return found[0] if found else None


def wait_for_samples(
    read: Callable[[], Samples], check: Callable[[Samples], object], timeout: float = 20.0
) -> Samples:
    """The samples `read()` returns once `check` holds for them."""

    def ready() -> Samples | None:
        samples = read()
        return samples if check(samples) else None

    return wait_until(ready, timeout=timeout)
