"""Silences are watched: a silence can hide every alert for good, so the relay reads Alertmanager's
silences (`GET /api/v2/silences`) and mails a warning, once per silence, when an active one
- matches the Watchdog (the heartbeat would stop and "monitoring is blind" follow, or worse,
  Alertmanager keeps the relay fed while everything else is hidden);
- matches every alert of a severity or host: no matcher narrows it below the scope labels
  (`severity`, `instance`, `job`), counting a matcher that excludes (`!=`, `!~`) or a regex that
  takes any value (`alertname=~".+"`) as no narrowing at all;
- runs longer than SILENCE_MAX_DURATION (7 days by default).
The warning names who created the silence and its comment. Which silences were warned about is
kept in the relay's store, so a restart (or a second replica) does not warn again.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dockpulse_relay.compose.notices import notice_mail
from dockpulse_relay.config import RelayConfig
from dockpulse_relay.model import NewMail
from dockpulse_relay.times import clock_text, duration_text

log = logging.getLogger(__name__)

WATCHDOG_LABELS = {"alertname": "Watchdog", "severity": "none", "heartbeat": "true"}
SCOPE_LABELS = ("severity", "instance", "job")  # a silence on these alone hides a whole class
# A regex that takes all of these takes any value (".*", ".+", "[^!]*", "(a|.+)"...).
ANY_VALUES = ("x", "ContainerDown", "web-1:9487", "critical", "Q9 _z.-/é")
NOTICE_PREFIX = "silence:"


@dataclass(frozen=True)
class Matcher:
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    def matches(self, labels: dict[str, str]) -> bool:
        """Alertmanager's semantics: regexes are anchored, a missing label is ""."""
        actual = labels.get(self.name, "")
        hit = (
            re.fullmatch(self.value, actual) is not None if self.is_regex else actual == self.value
        )
        return hit == self.is_equal

    def takes_any_value(self) -> bool:
        """True when this matcher narrows nothing: it excludes, or its regex takes anything."""
        if not self.is_equal:
            return True
        return self.is_regex and all(re.fullmatch(self.value, v) for v in ANY_VALUES)

    def __str__(self) -> str:
        operator = (
            ("=~" if self.is_regex else "=") if self.is_equal else "!~" if self.is_regex else "!="
        )
        return f'{self.name}{operator}"{self.value}"'


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    state: str  # active | pending | expired


def _unix(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def parse_silences(payload: object) -> list[Silence]:
    """Alertmanager's `GET /api/v2/silences` answer; ValueError when it is not one."""
    if not isinstance(payload, list):
        raise ValueError("expected a JSON list of silences")
    found = []
    for item in payload:
        try:
            matchers = tuple(
                Matcher(
                    str(m["name"]),
                    str(m["value"]),
                    bool(m.get("isRegex", False)),
                    bool(m.get("isEqual", True)),
                )
                for m in item["matchers"]
            )
            found.append(
                Silence(
                    id=str(item["id"]),
                    matchers=matchers,
                    starts_at=_unix(item["startsAt"]),
                    ends_at=_unix(item["endsAt"]),
                    created_by=str(item.get("createdBy", "")),
                    comment=str(item.get("comment", "")),
                    state=str((item.get("status") or {}).get("state", "")),
                )
            )
        except (KeyError, TypeError, ValueError, re.error) as exc:
            raise ValueError(f"not a silence: {exc!r}") from None
    return found


def _matches_all(silence: Silence, labels: dict[str, str]) -> bool:
    try:
        return all(matcher.matches(labels) for matcher in silence.matchers)
    except re.error:
        return False


def concerns(silence: Silence, max_duration: float) -> list[str]:
    """Why this silence deserves a warning; empty for an ordinary, narrow, short one."""
    reasons = []
    if _matches_all(silence, WATCHDOG_LABELS):
        reasons.append("it matches the Watchdog, the alert path's heartbeat")
    try:
        narrowing = [
            m for m in silence.matchers if m.name not in SCOPE_LABELS and not m.takes_any_value()
        ]
    except re.error:
        narrowing = list(silence.matchers)
    if not narrowing:
        scope = [str(m) for m in silence.matchers if m.name in SCOPE_LABELS and m.is_equal]
        covered = " and ".join(scope) if scope else "any labels"
        reasons.append(f"it matches every alert with {covered}")
    length = silence.ends_at - silence.starts_at
    if length > max_duration:
        reasons.append(
            f"it runs {duration_text(length)}, longer than SILENCE_MAX_DURATION "
            f"({duration_text(max_duration)})"
        )
    return reasons


def silence_mail(
    silence: Silence, reasons: list[str], now: float, config: RelayConfig, link: str
) -> NewMail:
    """The warning about one silence."""
    who = silence.created_by or "someone"
    title = f"[WARNING] A broad silence hides alerts: created by {who}"
    matchers = ", ".join(str(m) for m in silence.matchers)
    text = (
        f"{title}\n\nAlertmanager silence {silence.id}\n"
        f"  matchers:   {{{matchers}}}\n"
        f"  created by: {who}\n"
        f"  comment:    {silence.comment or '(none)'}\n"
        f"  from {clock_text(silence.starts_at)} until {clock_text(silence.ends_at)}\n\n"
        "Why this warning:\n"
        + "".join(f"  - {reason}\n" for reason in reasons)
        + f"\nWhile it lasts, the alerts it matches are not mailed. If it is not meant, expire it:"
        f"\n  {link}\nYou get this warning once for this silence.\n\n-- dockpulse-relay\n"
    )
    return notice_mail("silence", title, text, config, now, priority=1)


def warnings_due(
    payload: Any, now: float, config: RelayConfig, alertmanager_url: str
) -> list[tuple[str, NewMail]]:
    """(notice key, mail) for every active silence that deserves a warning."""
    due = []
    for silence in parse_silences(payload):
        if silence.state != "active":
            continue
        reasons = concerns(silence, config.silence_max_duration)
        if reasons:
            link = f"{alertmanager_url}/#/silences/{silence.id}"
            due.append(
                (NOTICE_PREFIX + silence.id, silence_mail(silence, reasons, now, config, link))
            )
    return due
