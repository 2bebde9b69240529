"""What a person does with a mail's silence link, for the tests: read the matchers the link
prefills, and create that silence through Alertmanager's API v2 (the form's "Create")."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import requests

from dockpulse_relay.compose.links import CONTAINER_SILENCE_SECONDS

_MATCHER = re.compile(r'\s*([^{}!=~,\\"\'`\s]+)\s*=\s*("(?:[^"\\]|\\.)*")\s*(?:,|$)')


class SilenceError(RuntimeError):
    """Alertmanager did not create the silence; the message says why."""


def matchers_from_silence_url(url: str) -> dict[str, str]:
    """The matchers a silence-form link carries (what the form will show)."""
    fragment = urlsplit(url).fragment
    route, _, query = fragment.partition("?")
    if route != "/silences/new":
        raise ValueError(f"not a new-silence link: {url}")
    (text,) = parse_qs(query, keep_blank_values=True)["filter"]
    body = text.strip()
    if not (body.startswith("{") and body.endswith("}")):
        raise ValueError(f"filter is not {{...}}: {text!r}")
    matchers, position, inner = {}, 0, body[1:-1]
    while position < len(inner):
        match = _MATCHER.match(inner, position)
        if match is None:
            raise ValueError(f"unreadable matcher at {inner[position:]!r}")
        matchers[match.group(1)] = json.loads(match.group(2))
        position = match.end()
    return matchers


def create_silence(
    alertmanager_url: str,
    matchers: dict[str, str],
    duration: float = CONTAINER_SILENCE_SECONDS,
    comment: str = "silenced from an alert mail",
    created_by: str = "dockpulse-relay",
    timeout: float = 5.0,
    auth: tuple[str, str] | None = None,
    regex: bool = False,
) -> str:
    """Create a silence of `duration` seconds from now through API v2; its id. `auth`: basic
    auth for an Alertmanager behind its web config; `regex`: every matcher is a regex."""
    now = datetime.now(UTC)
    body = {
        "matchers": [
            {"name": key, "value": value, "isRegex": regex, "isEqual": True}
            for key, value in matchers.items()
        ],
        "startsAt": now.isoformat(),
        "endsAt": datetime.fromtimestamp(now.timestamp() + duration, UTC).isoformat(),
        "createdBy": created_by,
        "comment": comment,
    }
    try:
        answer = requests.post(
            f"{alertmanager_url.rstrip('/')}/api/v2/silences",
            json=body,
            timeout=timeout,
            auth=auth,
        )
    except requests.RequestException as exc:
        raise SilenceError(f"Alertmanager at {alertmanager_url} unreachable: {exc}") from None
    if answer.status_code != 200:
        raise SilenceError(
            f"Alertmanager refused the silence: HTTP {answer.status_code} "
            f"{answer.text.strip()[:200]}"
        )
    return str(answer.json()["silenceID"])
