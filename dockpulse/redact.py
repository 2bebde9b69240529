"""Redacting common secret shapes from text a monitored program wrote (its log lines, its
health-check output) before that text leaves the exporter.

What is replaced (case-insensitive where it is a word), by `[REDACTED]` or a marker naming
what was there:

- `password=`, `passwd=`, `pwd=`, `secret=`, `token=`, `api_key=` / `apikey=`, `access_token=`,
  `client_secret=`, `aws_secret_access_key=` values (also with `:` and quoted, as in JSON or
  YAML): the value up to white space, a quote, `&`, `,` or `;`;
- `Authorization:` / `Proxy-Authorization:` headers: the rest of the line;
- `Bearer <token>` anywhere;
- AWS access key ids (`AKIA`, `ASIA`, `AGPA`, `AIDA`, `AROA`, `ANPA`, `ANVA`, `AIPA` and 16
  upper-case letters or digits);
- AWS secret access keys: 40 characters of `[A-Za-z0-9/+]` standing alone with both upper- and
  lower-case letters (a lower-case hex digest such as a git SHA-1 is kept);
- PEM blocks (`-----BEGIN ...-----` to `-----END ...-----`): the whole block, across lines;
  an unterminated one to the end of the text.

This is a safety net for secret *shapes*, not a guarantee: a program that logs a secret in a
shape of its own still leaks it; `dockpulse.mail_logs=false` keeps its log lines out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[REDACTED]"
PEM_REDACTED = "[REDACTED PEM BLOCK]"
AWS_KEY_ID_REDACTED = "[REDACTED AWS KEY ID]"
AWS_SECRET_REDACTED = "[REDACTED AWS SECRET KEY]"

_KEYS = (
    r"aws_secret_access_key|client_secret|access_token|api[_-]?key|apikey|"
    r"password|passwd|pwd|secret|token"
)
# key, optionally quoted, = or :, then a quoted value or a bare one.
_KEY_VALUE = re.compile(
    rf"""(?P<key>["']?\b(?:{_KEYS})\b["']?\s*[=:]\s*)(?P<value>"[^"]*"|'[^']*'|[^\s"'&,;]+)""",
    re.IGNORECASE,
)
_AUTHORIZATION = re.compile(r"(?P<key>\b(?:proxy-)?authorization\s*:\s*)(?P<value>[^\r\n]+)", re.I)
_BEARER = re.compile(r"(?P<key>\bbearer\s+)(?P<value>[A-Za-z0-9._~+/=-]+)", re.IGNORECASE)
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b")
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_PEM_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]+-----")
_PEM_END = re.compile(r"-----END [A-Z0-9 ]+-----")
_PEM_BLOCK = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(?:-----END [A-Z0-9 ]+-----|\Z)", re.DOTALL)


def _keep_key(match: re.Match[str]) -> str:
    value = match.group("value")
    if value.startswith(REDACTED) or value.startswith("[REDACTED"):
        return match.group(0)
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{match.group('key')}{quote}{REDACTED}{quote}"


def _aws_secret(match: re.Match[str]) -> str:
    text = match.group(0)
    mixed_case = any(c.isupper() for c in text) and any(c.islower() for c in text)
    return AWS_SECRET_REDACTED if mixed_case else text


def redact_line(line: str) -> str:
    """One line (or any text without PEM blocks) with its secret shapes replaced."""
    line = _AUTHORIZATION.sub(lambda m: f"{m.group('key')}{REDACTED}", line)
    line = _BEARER.sub(_keep_key, line)
    line = _KEY_VALUE.sub(_keep_key, line)
    line = _AWS_KEY_ID.sub(AWS_KEY_ID_REDACTED, line)
    return _AWS_SECRET.sub(_aws_secret, line)


def redact(text: str) -> str:
    """`text` (any number of lines) with PEM blocks and every secret shape replaced."""
    return redact_line(_PEM_BLOCK.sub(PEM_REDACTED, text))


def redact_lines(lines: Iterable[str]) -> list[str]:
    """Lines one by one, a PEM block spread over several of them replaced line by line
    (each of its lines, BEGIN and END included, becomes the marker)."""
    found = []
    inside = False
    for line in lines:
        if inside or _PEM_BEGIN.search(line):
            begin = _PEM_BEGIN.search(line) if not inside else None
            head = line[: begin.start()] if begin else ""
            inside = not _PEM_END.search(line)
            found.append(redact_line(head) + PEM_REDACTED)
            continue
        found.append(redact_line(line))
    return found
