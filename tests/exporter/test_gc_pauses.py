"""The exporter freezes what each refresh leaves (gc_pauses.py) so that the cyclic collector's
full passes do not stop scrapes. That is safe only while a refresh makes no reference cycles:
frozen cyclic garbage would never be freed. These tests hold a real refresh, on a real engine
with running and stopped containers, to that."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dockpulse_exporter.gc_pauses import LongLivedObjects
from dockpulse_stack.engine import Engine
from testkit.exporter import exporter_in_process


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.unfreeze()
        gc.enable()


def test_a_refresh_and_its_render_make_no_reference_cycles(
    engine: Engine, run_container: Callable[..., Any], collector_off: None
) -> None:
    run_container("sleep 300", mem_limit="64m")
    run_container("while true; do echo x > /tmp/x; done")  # usage changes at every refresh
    run_container("exit 3").wait(timeout=30)
    with exporter_in_process(engine.host) as exporter:
        exporter.long_lived = LongLivedObjects(thaw_every=0)  # never freeze: see everything
        exporter.sampler.refresh()
        assert sum(s.usage is not None for s in exporter.sampler.snapshot.samples) >= 2
        gc.collect()  # start-up made what it made; from here on only refreshes run
        for _ in range(5):
            exporter.sampler.refresh()
            time.sleep(0.05)
        assert gc.collect() == 0, [type(o).__name__ for o in gc.garbage[:20]]


def test_settle_freezes_after_each_refresh_and_thaws_once_per_period(
    collector_off: None,
) -> None:
    long_lived = LongLivedObjects(thaw_every=0.2)
    kept = [[index] for index in range(1000)]
    long_lived.settle()
    assert gc.get_freeze_count() >= len(kept)
    time.sleep(0.25)
    long_lived.settle()  # the period is over: everything is the collector's again
    assert gc.get_freeze_count() == 0
    long_lived.settle()
    assert gc.get_freeze_count() >= len(kept)
