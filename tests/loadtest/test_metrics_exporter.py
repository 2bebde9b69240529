"""The exporter's pure parts (Locust itself is only run as a subprocess, see conftest)."""

from __future__ import annotations

from dockpulse_loadtest.metrics import BUCKETS_SECONDS, _histogram


def test_response_times_in_milliseconds_become_cumulative_buckets_in_seconds() -> None:
    # Locust's map: rounded response time in ms -> number of requests.
    buckets, total_seconds = _histogram({4: 2, 90: 1, 1500: 1, 70000: 1}, 71598.0)
    by_bound = dict(buckets)
    assert len(buckets) == len(BUCKETS_SECONDS) + 1
    assert by_bound["0.005"] == 2
    assert by_bound["0.1"] == 3
    assert by_bound["2.5"] == 4
    assert by_bound["60"] == 4
    assert by_bound["+Inf"] == 5
    assert total_seconds == 71.598
