"""Query parameters, validated: a clear 400 naming the parameter for anything off."""

from __future__ import annotations

import math

from flask import request


class BadParameter(ValueError):
    """A query parameter is missing, not a number, or out of range."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


def number(
    name: str,
    *,
    minimum: float,
    maximum: float,
    default: float | None = None,
    integer: bool = True,
) -> float:
    """The parameter `name` as a number in [minimum, maximum]; BadParameter otherwise."""
    raw = request.args.get(name)
    if raw is None:
        if default is None:
            raise BadParameter(name, "required")
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise BadParameter(name, f"must be {kind}, got {raw[:40]!r}") from None
    if not math.isfinite(value):
        raise BadParameter(name, "must be a finite number")
    if value < minimum:
        raise BadParameter(name, f"must be at least {minimum:g}")
    if value > maximum:
        raise BadParameter(name, f"must be at most {maximum:g} (the configured cap)")
    return value
