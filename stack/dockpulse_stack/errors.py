"""The one error the stack tooling reports to a user: a line saying what failed and what to do."""

from __future__ import annotations


class StackError(RuntimeError):
    """Something a user can meet and act on (apt busy, no root, a port taken, ...)."""
