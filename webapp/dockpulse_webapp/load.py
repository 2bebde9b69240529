"""Work that really loads the container: burn CPU, hold memory.

CPU is burned by hashing (hashlib releases the GIL on large buffers, so concurrent requests
use several cores, as a real workload would). Memory is an anonymous mapping with every page
written, so it counts in the container's usage, and unmapped at the end, so it is given back.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import time

MIB = 1024 * 1024
SLICE_SECONDS = 0.1
_CHUNK = os.urandom(1024 * 1024)  # large: hashlib hashes it without holding the GIL


def burn_cpu(seconds: float, intensity_percent: int = 100) -> int:
    """Keep one core `intensity_percent` busy for `seconds`; returns the number of hashes."""
    hashes = 0
    deadline = time.monotonic() + seconds
    busy = SLICE_SECONDS * intensity_percent / 100
    while (now := time.monotonic()) < deadline:
        busy_until = min(now + busy, deadline)
        while time.monotonic() < busy_until:
            hashlib.sha256(_CHUNK).digest()
            hashes += 1
        idle = min(now + SLICE_SECONDS, deadline) - time.monotonic()
        if idle > 0:
            time.sleep(idle)
    return hashes


def hold_memory(mb: int, seconds: float) -> int:
    """Allocate and touch `mb` MiB, hold it for `seconds`, free it; returns the bytes held."""
    size = mb * MIB
    block = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        page = mmap.PAGESIZE
        block[::page] = b"\x01" * len(range(0, size, page))
        time.sleep(seconds)
    finally:
        block.close()
    return size
