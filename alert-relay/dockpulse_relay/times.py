"""Moments and spans as the relay's mails and notices write them."""

from __future__ import annotations

from datetime import UTC, datetime


def clock_text(moment: float) -> str:
    """A moment as the mails write it: 2026-01-31 12:00:00 UTC."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration_text(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"
