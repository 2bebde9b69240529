"""Containers come and go: no stale series, and a recreated name is one container."""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path

from testkit.helpers import wait_until


def container_id(cgroup_id: str) -> str:
    """The container id in a cgroup path (/docker/<id> or .../docker-<id>.scope)."""
    return cgroup_id.rsplit("/", 1)[-1].removeprefix("docker-").removesuffix(".scope")


def ids_by_name(samples) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for name, labels, _ in samples:
        if name == "container_up":
            found.setdefault(labels["name"], set()).add(container_id(labels["id"]))
    return found


def series_ids(samples) -> set[str]:
    return {container_id(labels["id"]) for _, labels, _ in samples if "id" in labels}


def test_churn_leaves_no_stale_series(exporter, run_container) -> None:
    batch = [run_container("sleep 300") for _ in range(25)]
    batch_ids = {c.id for c in batch}
    wait_until(lambda: batch_ids <= series_ids(exporter.scrape()), timeout=30)
    for container in batch:
        container.remove(force=True)
    wait_until(lambda: not (batch_ids & series_ids(exporter.scrape())), timeout=30)


def test_recreated_name_is_one_container_with_the_new_id(exporter, run_container) -> None:
    first = run_container("sleep 300", name="exporter-test-recreated")
    wait_until(lambda: ids_by_name(exporter.scrape()).get(first.name) == {first.id})
    first.remove(force=True)
    second = run_container("sleep 300", name="exporter-test-recreated")
    assert second.id != first.id
    wait_until(lambda: ids_by_name(exporter.scrape()).get(second.name) == {second.id})
    assert first.id not in series_ids(exporter.scrape())


def open_proc_paths(pid: int) -> list[str]:
    """What the exporter's descriptors point at."""
    paths = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with suppress(OSError):
            paths.append(os.readlink(fd))
    return paths


def test_stopped_container_releases_its_descriptors(exporter, run_container) -> None:
    sleeper = run_container("sleep 300")
    sleeper.reload()
    net_dev = f"/proc/{sleeper.attrs['State']['Pid']}/net/dev"
    pid = exporter.process.pid
    wait_until(lambda: net_dev in open_proc_paths(pid))
    assert any(sleeper.id in path for path in open_proc_paths(pid))
    sleeper.stop(timeout=1)
    # Closed when it stops (its network namespace can go), not only when it is removed.
    wait_until(lambda: not any(sleeper.id in p for p in open_proc_paths(pid)), timeout=10)
    assert net_dev not in open_proc_paths(pid)


def test_waves_of_containers_leave_no_descriptors_behind(exporter, run_container) -> None:
    # Other tests' containers come and go on the shared engine, so the exporter's descriptors
    # are checked by what they point at, not by their count (bench/exporter_churn.py counts).
    pid = exporter.process.pid
    for _ in range(3):
        wave = [run_container("sleep 300") for _ in range(15)]
        ids = {c.id for c in wave}
        wait_until(lambda ids=ids: ids <= series_ids(exporter.scrape()), timeout=30)
        pids = set()
        for container in wave:
            container.reload()
            pids.add(container.attrs["State"]["Pid"])
        held = [p for p in open_proc_paths(pid) if any(i in p for i in ids)]
        assert len(held) >= len(wave)  # cgroup files are open while they run
        for container in wave:
            container.remove(force=True)
        wait_until(lambda ids=ids: not (ids & series_ids(exporter.scrape())), timeout=30)

        def leftovers(ids=ids, pids=pids) -> list[str]:
            return [
                path
                for path in open_proc_paths(pid)
                if any(i in path for i in ids) or any(f"/proc/{p}/" in path for p in pids)
            ]

        wait_until(lambda leftovers=leftovers: not leftovers(), timeout=10)
