"""A cap on stress requests in progress, shared by every gunicorn worker process.

Each slot is a file locked with `flock`; the kernel releases a lock when its process dies, so a
worker killed mid-request (OOM, timeout) never leaks a slot.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class StressSlots:
    """`limit` slots as lock files in `directory` (made by the master before forking)."""

    def __init__(self, directory: Path, limit: int) -> None:
        self.limit = limit
        directory.mkdir(parents=True, exist_ok=True)
        self._paths = [directory / f"stress-slot-{n}.lock" for n in range(limit)]
        for path in self._paths:
            path.touch(exist_ok=True)

    @contextmanager
    def take(self) -> Iterator[bool]:
        """Yield True holding a free slot, or False when all are taken (do not wait)."""
        for path in self._paths:
            fd = os.open(path, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield True
            finally:
                os.close(fd)  # closing the descriptor releases the lock
            return
        yield False
