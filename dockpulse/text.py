"""Cleaning text that came from someone else (labels, annotations, a container's log lines).

One set of rules for every service: a lone surrogate (valid JSON, not encodable) becomes
U+FFFD; every character that ends a line somewhere (CR, VT, FF, NEL, U+2028/9, ...), tabs and
other control characters (ESC included, so no terminal escapes) become a space; values are
bounded in length, an ellipsis saying where they were cut.

    one_line("ok\\r\\nSubject: fake")   # 'ok Subject: fake'
    body_text("a\\r\\nb\\x1b[2K")         # 'a\\nb [2K'
"""

from __future__ import annotations

import re
import unicodedata

HEADER_LIMIT = 180
BODY_LIMIT = 4000
_SPACES = re.compile(r"\s+")
# Characters that end a line somewhere (Unicode line/paragraph separators, NEL, FF, VT, ...).
LINE_BREAKS = frozenset(
    {"\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"}
)


def clean_char(char: str, keep_newlines: bool) -> str:
    """`char` as it may appear: a space for a control character or line break (LF kept when
    `keep_newlines`), U+FFFD for a lone surrogate."""
    if char == "\n" and keep_newlines:
        return char
    category = unicodedata.category(char)
    if category == "Cs":
        return "\ufffd"
    if char in LINE_BREAKS or char == "\t" or category in ("Cc", "Zl", "Zp"):
        return " "
    return char


def bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(text: str, limit: int = HEADER_LIMIT) -> str:
    """One line, printable, runs of white space folded, at most `limit` characters: safe in
    any header or as one line of a list."""
    cleaned = "".join(clean_char(char, keep_newlines=False) for char in text)
    return bounded(_SPACES.sub(" ", cleaned).strip(), limit)


def body_text(text: str, limit: int = BODY_LIMIT) -> str:
    """Text of a body: line breaks kept (CRLF -> LF), other control characters replaced,
    bounded."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return bounded("".join(clean_char(char, keep_newlines=True) for char in text), limit)


def no_surrogates(text: str) -> str:
    """Lone surrogates (valid JSON, not encodable) become U+FFFD."""
    return "".join("\ufffd" if unicodedata.category(char) == "Cs" else char for char in text)
