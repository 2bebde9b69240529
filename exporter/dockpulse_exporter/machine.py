"""The host as cAdvisor's root cgroup (`id="/"`) reports it, and the filesystem of Docker's data.

The root series are read from /proc (stat, meminfo, the host's net/dev, diskstats), which looks
the same under cgroup v1 and v2 and from inside the exporter's container with the host's /proc
mounted. Writable-layer sizes and statvfs run on their own slow interval (`FilesystemSampler`),
never in the usage refresh nor in a scrape.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockpulse_exporter.cgroups import IGNORED_INTERFACES, READ_SIZE, USER_HZ, parse_net_dev
from dockpulse_exporter.devices import IGNORED_DEVICES, DeviceNames, DiskStats
from dockpulse_exporter.docker_watch import DOCKER_ERRORS, DockerWatcher
from dockpulse_exporter.model import Filesystem, Usage

log = logging.getLogger(__name__)

# Interfaces cAdvisor leaves out of the root cgroup's network: a container's, plus bridges.
HOST_IGNORED_INTERFACES = (*IGNORED_INTERFACES, "br-")
SECTOR_BYTES = 512


def _meminfo(text: str) -> dict[str, int]:
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            values[key] = int(parts[0]) * 1024
    return values


def root_usage(proc_root: Path, disks: dict[str, DiskStats]) -> Usage:
    """Machine-wide counters in cAdvisor's units."""
    cpu = [int(v) for v in (proc_root / "stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = cpu
    memory = _meminfo((proc_root / "meminfo").read_text())
    used = memory.get("MemTotal", 0) - memory.get("MemFree", 0)
    usage = Usage(
        cpu_usage_seconds=(user + nice + system + irq + softirq + steal) / USER_HZ,
        cpu_user_seconds=(user + nice) / USER_HZ,
        cpu_system_seconds=(system + irq + softirq) / USER_HZ,
        memory_usage_bytes=used,
        memory_working_set_bytes=max(used - memory.get("Inactive(file)", 0), 0),
        memory_rss_bytes=memory.get("AnonPages", 0),
        memory_cache_bytes=memory.get("Cached", 0) + memory.get("Buffers", 0),
        memory_swap_bytes=memory.get("SwapTotal", 0) - memory.get("SwapFree", 0),
    )
    for disk in disks.values():
        if disk.name.removeprefix("/dev/").startswith(IGNORED_DEVICES):
            continue
        usage.io_read_bytes[disk.name] = disk.read_sectors * SECTOR_BYTES
        usage.io_write_bytes[disk.name] = disk.write_sectors * SECTOR_BYTES
        usage.io_reads[disk.name] = disk.reads
        usage.io_writes[disk.name] = disk.writes
    usage.network = _host_network(proc_root)
    return usage


def _host_network(proc_root: Path) -> dict:
    """The host network namespace's interfaces (via PID 1), else the exporter's own."""
    for pid in ("1", "self"):
        try:
            with open(proc_root / pid / "net" / "dev", "rb") as file:
                return parse_net_dev(file.read(READ_SIZE), HOST_IGNORED_INTERFACES)
        except OSError:
            continue
    return {}


@dataclass(slots=True)
class FilesystemState:
    """What the last slow pass found."""

    layer_bytes: dict[str, int] = field(default_factory=dict)  # container id -> SizeRw
    filesystem: Filesystem | None = None
    used_bytes: int = 0
    device_number: str = ""  # "major:minor" of the filesystem, for its diskstats line
    seconds: float = 0.0


def statvfs_filesystem(path: Path, devices: DeviceNames) -> tuple[Filesystem, int, str]:
    """(Filesystem, bytes used, "major:minor") of the filesystem holding `path`."""
    stat = os.statvfs(path)
    device = os.stat(path).st_dev
    number = f"{os.major(device)}:{os.minor(device)}"
    filesystem = Filesystem(
        device=devices.name(number),
        capacity_bytes=stat.f_blocks * stat.f_frsize,
        inodes_total=stat.f_files,
        inodes_free=stat.f_ffree,
    )
    return filesystem, (stat.f_blocks - stat.f_bfree) * stat.f_frsize, number


class FilesystemSampler:
    """Every `interval`: writable-layer sizes (Docker's `size=true` listing, which walks each
    upper directory inside dockerd) and statvfs of Docker's data directory."""

    def __init__(
        self,
        watcher: DockerWatcher,
        devices: DeviceNames,
        interval: float,
        root_dir: Path | None = None,
        proc_root: Path = Path("/proc"),
    ) -> None:
        self.watcher = watcher
        self.devices = devices
        self.interval = interval
        self.root_dir = root_dir
        self.proc_root = proc_root
        self.state = FilesystemState()
        self.errors_total = 0
        self._stop = threading.Event()
        self._warned = False

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        while not self._stop.is_set():
            if self.watcher.api is not None and self.watcher.docker_up:
                try:
                    self.refresh()
                except DOCKER_ERRORS as exc:
                    self.errors_total += 1
                    log.warning("filesystem pass failed: %s", exc)
            self._stop.wait(self.interval if self.state.seconds else 1.0)

    def refresh(self) -> FilesystemState:
        started = time.perf_counter()
        api = self.watcher.api
        assert api is not None
        listing = api.containers(all=True, size=True)
        sizes = {c["Id"]: int(c.get("SizeRw") or 0) for c in listing}
        state = FilesystemState(layer_bytes=sizes)
        for path in self._filesystem_paths(api):
            try:
                state.filesystem, state.used_bytes, state.device_number = statvfs_filesystem(
                    path, self.devices
                )
                break
            except OSError:
                continue
        else:
            if not self._warned:
                self._warned = True
                log.warning(
                    "Docker's data directory is not visible here: no container_fs_limit_bytes "
                    "or inode counts (set docker_root_dir / EXPORTER_DOCKER_ROOT_DIR)"
                )
        state.seconds = time.perf_counter() - started
        self.state = state
        return state

    def _filesystem_paths(self, api: Any) -> list[Path]:
        """Docker's data directory (configured, or as Docker reports it), then a running
        container's root through /proc (overlayfs reports its upper filesystem)."""
        if self.root_dir is not None:
            return [self.root_dir]
        paths = [Path(api.info().get("DockerRootDir") or "/var/lib/docker")]
        for container in self.watcher.containers():
            if container.running and container.pid > 0:
                paths.append(self.proc_root / str(container.pid) / "root")
                break
        return paths
