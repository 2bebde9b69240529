"""Fallback: usage from Docker's stats API, for containers whose cgroup is not readable here.

One-shot stats skip Docker's one-second pre-sample wait, but still cost a round trip each, so
they are fetched in parallel and only for the containers that need them.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker

from dockpulse_exporter.cgroups import IGNORED_INTERFACES
from dockpulse_exporter.devices import DeviceNames
from dockpulse_exporter.model import Container, NetworkCounters, Usage


def usage_from_stats(stats: dict[str, Any], devices: DeviceNames | None = None) -> Usage:
    """Map a stats API document onto cAdvisor's counters (devices named as cAdvisor does)."""
    devices = devices or DeviceNames(Path("/proc"))
    cpu = stats.get("cpu_stats") or {}
    cpu_usage = cpu.get("cpu_usage") or {}
    throttling = cpu.get("throttling_data") or {}
    memory = stats.get("memory_stats") or {}
    memory_stat = memory.get("stats") or {}
    memory_usage = int(memory.get("usage") or 0)
    inactive = memory_stat.get("total_inactive_file", memory_stat.get("inactive_file", 0))
    usage = Usage(
        cpu_usage_seconds=int(cpu_usage.get("total_usage") or 0) / 1e9,
        cpu_user_seconds=int(cpu_usage.get("usage_in_usermode") or 0) / 1e9,
        cpu_system_seconds=int(cpu_usage.get("usage_in_kernelmode") or 0) / 1e9,
        cfs_periods=int(throttling.get("periods") or 0),
        cfs_throttled_periods=int(throttling.get("throttled_periods") or 0),
        cfs_throttled_seconds=int(throttling.get("throttled_time") or 0) / 1e9,
        memory_usage_bytes=memory_usage,
        memory_working_set_bytes=max(memory_usage - int(inactive or 0), 0),
        memory_rss_bytes=int(memory_stat.get("total_rss", memory_stat.get("anon", 0)) or 0),
        memory_cache_bytes=int(memory_stat.get("total_cache", memory_stat.get("file", 0)) or 0),
        memory_swap_bytes=int(memory_stat.get("total_swap", 0) or 0),
        memory_max_usage_bytes=int(memory["max_usage"]) if memory.get("max_usage") else None,
    )
    blkio = stats.get("blkio_stats") or {}
    for key, reads, writes in (
        ("io_service_bytes_recursive", usage.io_read_bytes, usage.io_write_bytes),
        ("io_serviced_recursive", usage.io_reads, usage.io_writes),
    ):
        for entry in blkio.get(key) or []:
            device = devices.name(f"{entry.get('major')}:{entry.get('minor')}")
            operation = str(entry.get("op", "")).lower()
            target = {"read": reads, "write": writes}.get(operation)
            if target is not None:
                target[device] = target.get(device, 0) + int(entry.get("value") or 0)
    for interface, net in (stats.get("networks") or {}).items():
        if interface.startswith(IGNORED_INTERFACES):
            continue
        usage.network[interface] = NetworkCounters(
            receive_bytes=int(net.get("rx_bytes", 0)),
            receive_packets=int(net.get("rx_packets", 0)),
            receive_errors=int(net.get("rx_errors", 0)),
            receive_dropped=int(net.get("rx_dropped", 0)),
            transmit_bytes=int(net.get("tx_bytes", 0)),
            transmit_packets=int(net.get("tx_packets", 0)),
            transmit_errors=int(net.get("tx_errors", 0)),
            transmit_dropped=int(net.get("tx_dropped", 0)),
        )
    return usage


class StatsApiReader:
    """Reads many containers' stats in parallel through the Docker API."""

    def __init__(self, workers: int = 8, devices: DeviceNames | None = None) -> None:
        self.devices = devices or DeviceNames(Path("/proc"))
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stats-api")

    def read_many(
        self, api: docker.APIClient, containers: list[Container]
    ) -> dict[str, Usage | None]:
        def read_one(container: Container) -> Usage | None:
            try:
                stats = api.stats(container.id, stream=False, one_shot=True)
                return usage_from_stats(stats, self.devices)
            except Exception:  # an unreadable container is skipped, never fatal
                return None

        results = self._pool.map(read_one, containers)
        return {container.id: usage for container, usage in zip(containers, results, strict=True)}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
