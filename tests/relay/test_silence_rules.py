"""Which silences deserve a warning (pure logic, no Alertmanager: milliseconds)."""

from __future__ import annotations

import pytest

from dockpulse_relay.plan.silences import Matcher, Silence, concerns

WEEK = 7 * 86400.0


def silence(*matchers: Matcher, hours: float = 1) -> Silence:
    return Silence("s1", matchers, 0.0, hours * 3600, "bob", "maintenance", "active")


@pytest.mark.parametrize(
    ("matchers", "expected"),
    [
        ((Matcher("alertname", "Watchdog"),), ["Watchdog"]),
        ((Matcher("heartbeat", "true"),), ["Watchdog"]),
        ((Matcher("alertname", ".*", is_regex=True),), ["Watchdog", "every alert"]),
        ((Matcher("alertname", "ContainerDown", is_equal=False),), ["Watchdog", "every alert"]),
        ((Matcher("severity", "warning"),), ["every alert with severity"]),
        ((Matcher("instance", "h:9487"), Matcher("name", ".+", is_regex=True)), ["every alert"]),
        ((Matcher("job", "exporter"),), ["every alert with job"]),
        ((Matcher("alertname", "ContainerDown"), Matcher("name", "web")), []),
        ((Matcher("alertname", "Container.*", is_regex=True),), []),
        ((Matcher("name", "(?P<go>x"), Matcher("alertname", "A")), []),  # a regex Python refuses
    ],
)
def test_what_a_silence_covers(matchers: tuple[Matcher, ...], expected: list[str]) -> None:
    reasons = concerns(silence(*matchers), WEEK)
    assert len(reasons) == len(expected), reasons
    for reason, words in zip(reasons, expected, strict=True):
        assert words in reason


def test_a_narrow_silence_longer_than_the_limit_is_mailed() -> None:
    narrow = (Matcher("alertname", "ContainerDown"), Matcher("name", "web"))
    assert concerns(silence(*narrow, hours=24 * 7), WEEK) == []
    (reason,) = concerns(silence(*narrow, hours=24 * 8), WEEK)
    assert "192h00m, longer than SILENCE_MAX_DURATION (168h00m)" in reason
