"""Keeping the cyclic garbage collector's full passes off the scrape path.

At 1000 containers a refresh leaves about 140k long-lived objects (each container's cached rows
and exposition lines). A full pass of the cyclic collector walks all of them while holding the
GIL: a 40-70 ms stop of every thread, which a scrape landing in it waits out. None of them is
in a reference cycle (they die by reference count when a later refresh replaces them; a test
holds the refresh to that), so after each refresh they are moved out of the collector's sight
with `gc.freeze()`. Once in a while everything is handed back, so that cycles made by other
threads (an exception's traceback, say) are still collected: one full pass per `thaw_every`.
"""

from __future__ import annotations

import gc
import time

THAW_SECONDS = 3600.0


class LongLivedObjects:
    """Call `settle()` after each refresh."""

    def __init__(self, thaw_every: float = THAW_SECONDS) -> None:
        self.thaw_every = thaw_every
        self._thawed_at = time.monotonic()

    def settle(self) -> None:
        now = time.monotonic()
        if now - self._thawed_at >= self.thaw_every:
            self._thawed_at = now
            gc.unfreeze()  # the next full pass, whenever it comes, sees everything again
        else:
            gc.freeze()
