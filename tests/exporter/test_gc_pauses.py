"""The exporter freezes what each refresh leaves (gc_pauses.py) so that the cyclic collector's
full passes do not stop scrapes. That is safe only while a refresh makes no reference cycles:
frozen cyclic garbage would never be freed. These tests hold a real refresh, on a real engine
with running and stopped containers, to that."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from dockpulse_exporter.cgroups import CgroupReader
from dockpulse_exporter.collector import ContainerMetrics
from dockpulse_exporter.docker_watch import DockerWatcher
from dockpulse_exporter.exposition import Exposition
from dockpulse_exporter.gc_pauses import LongLivedObjects
from dockpulse_exporter.sampler import Sampler
from dockpulse_stack.engine import Engine


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
    watcher = DockerWatcher(engine.host, resync_interval=60, on_change=lambda: None)
    with closing(engine.client()) as client:
        watcher.resync(client.api)
    sampler = Sampler(
        watcher,
        CgroupReader(Path("/sys/fs/cgroup"), Path("/proc")),
        interval=5,
        proc_root=Path("/proc"),
    )
    metrics = ContainerMetrics()
    exposition = Exposition(
        lambda: metrics.families(sampler.snapshot), CollectorRegistry(auto_describe=False)
    )
    sampler.on_refresh = exposition.update_containers
    sampler.refresh()
    assert sum(s.usage is not None for s in sampler.snapshot.samples) >= 2
    gc.collect()  # start-up made what it made; from here on only refreshes run
    for _ in range(5):
        sampler.refresh()
        time.sleep(0.05)
    sampler.stop()
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
