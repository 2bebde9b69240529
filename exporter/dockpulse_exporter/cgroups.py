"""Reading a container's resource usage straight from its cgroup files (v1 and v2).

A read costs a few file reads per container, where Docker's stats API costs about a second.
Paths are found once per container and cached; a container whose cgroup cannot be found returns
None, and the caller falls back to the stats API.
"""

from __future__ import annotations

import os
from pathlib import Path

from dockpulse_exporter.model import Container, NetworkCounters, Usage

USER_HZ = os.sysconf("SC_CLK_TCK")
V1_CONTROLLERS = ("cpuacct", "cpu", "memory", "blkio")


def _read_int(path: Path) -> int:
    return int(path.read_text().split()[0])


def _read_flat_keyed(path: Path) -> dict[str, int]:
    """`key value` lines (memory.stat, cpu.stat, cpuacct.stat)."""
    values: dict[str, int] = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            values[key] = int(value)
    return values


def read_network(proc_root: Path, pid: int) -> dict[str, NetworkCounters]:
    """Per-interface counters from /proc/<pid>/net/dev (the container's network namespace)."""
    counters: dict[str, NetworkCounters] = {}
    lines = (proc_root / str(pid) / "net" / "dev").read_text().splitlines()[2:]
    for line in lines:
        interface, _, numbers = line.partition(":")
        fields = [int(value) for value in numbers.split()]
        counters[interface.strip()] = NetworkCounters(
            receive_bytes=fields[0],
            receive_packets=fields[1],
            receive_errors=fields[2],
            receive_dropped=fields[3],
            transmit_bytes=fields[8],
            transmit_packets=fields[9],
            transmit_errors=fields[10],
            transmit_dropped=fields[11],
        )
    return counters


def read_machine(proc_root: Path) -> tuple[int, int]:
    """(CPU cores, memory bytes) of the host, from /proc."""
    cores = os.cpu_count() or 1
    for line in (proc_root / "meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return cores, int(line.split()[1]) * 1024
    return cores, 0


class CgroupReader:
    """Finds and reads containers' cgroups under `root` (usually /sys/fs/cgroup)."""

    def __init__(self, root: Path, proc_root: Path) -> None:
        self.root = root
        self.proc_root = proc_root
        self.unified = (root / "cgroup.controllers").exists()
        self._paths: dict[str, dict[str, Path]] = {}

    def forget(self, container_id: str) -> None:
        self._paths.pop(container_id, None)

    def read(self, container: Container) -> Usage | None:
        """The container's usage, or None when its cgroup is not readable here."""
        paths = self._paths.get(container.id) or self._locate(container)
        if paths is None:
            return None
        try:
            usage = self._read_v2(paths[""]) if self.unified else self._read_v1(paths)
        except (OSError, ValueError, IndexError):
            self._paths.pop(container.id, None)
            return None
        if container.network_mode != "host" and container.pid > 0:
            try:
                usage.network = read_network(self.proc_root, container.pid)
            except (OSError, ValueError, IndexError):
                usage.network = {}
        return usage

    def _candidates(self, container: Container) -> list[str]:
        """Relative cgroup paths Docker uses for the cgroupfs and systemd drivers."""
        parent = container.cgroup_parent.strip("/")
        cid = container.id
        candidates = [f"docker/{cid}", f"system.slice/docker-{cid}.scope"]
        if parent.endswith(".slice"):
            candidates.insert(0, f"{parent}/docker-{cid}.scope")
        elif parent:
            candidates.insert(0, f"{parent}/{cid}")
        return candidates

    def _locate(self, container: Container) -> dict[str, Path] | None:
        paths = self._locate_by_candidates(container) or self._locate_by_proc(container)
        if paths is not None:
            self._paths[container.id] = paths
        return paths

    def _locate_by_candidates(self, container: Container) -> dict[str, Path] | None:
        for relative in self._candidates(container):
            if self.unified:
                if (self.root / relative / "cpu.stat").exists():
                    return {"": self.root / relative}
            elif (self.root / "cpuacct" / relative / "cpuacct.usage").exists():
                return {ctrl: self.root / ctrl / relative for ctrl in V1_CONTROLLERS}
        return None

    def _locate_by_proc(self, container: Container) -> dict[str, Path] | None:
        """Paths from /proc/<pid>/cgroup, when the host's PID namespace is visible."""
        if container.pid <= 0:
            return None
        try:
            lines = (self.proc_root / str(container.pid) / "cgroup").read_text().splitlines()
        except OSError:
            return None
        paths: dict[str, Path] = {}
        for line in lines:
            _, controllers, relative = line.split(":", 2)
            relative = relative.lstrip("/")
            if self.unified and controllers == "":
                paths[""] = self.root / relative
            for controller in controllers.split(","):
                if controller in V1_CONTROLLERS:
                    paths[controller] = self.root / controller / relative
        wanted = ("",) if self.unified else V1_CONTROLLERS
        return paths if all(key in paths and paths[key].exists() for key in wanted) else None

    @staticmethod
    def _read_v1(paths: dict[str, Path]) -> Usage:
        cpuacct, cpu, memory, blkio = (paths[ctrl] for ctrl in V1_CONTROLLERS)
        cpu_times = _read_flat_keyed(cpuacct / "cpuacct.stat")
        cfs = _read_flat_keyed(cpu / "cpu.stat")
        memory_stat = _read_flat_keyed(memory / "memory.stat")
        memory_usage = _read_int(memory / "memory.usage_in_bytes")
        inactive_file = memory_stat.get("total_inactive_file", 0)
        usage = Usage(
            cpu_usage_seconds=_read_int(cpuacct / "cpuacct.usage") / 1e9,
            cpu_user_seconds=cpu_times.get("user", 0) / USER_HZ,
            cpu_system_seconds=cpu_times.get("system", 0) / USER_HZ,
            cfs_periods=cfs.get("nr_periods", 0),
            cfs_throttled_periods=cfs.get("nr_throttled", 0),
            cfs_throttled_seconds=cfs.get("throttled_time", 0) / 1e9,
            memory_usage_bytes=memory_usage,
            memory_working_set_bytes=max(memory_usage - inactive_file, 0),
            memory_rss_bytes=memory_stat.get("total_rss", 0),
            memory_cache_bytes=memory_stat.get("total_cache", 0),
        )
        service_bytes = blkio / "blkio.throttle.io_service_bytes_recursive"
        if not service_bytes.exists():
            service_bytes = blkio / "blkio.throttle.io_service_bytes"
        for line in service_bytes.read_text().splitlines():
            parts = line.split()
            if len(parts) != 3:
                continue
            device, operation, value = parts
            if operation == "Read":
                usage.io_read_bytes[device] = usage.io_read_bytes.get(device, 0) + int(value)
            elif operation == "Write":
                usage.io_write_bytes[device] = usage.io_write_bytes.get(device, 0) + int(value)
        return usage

    @staticmethod
    def _read_v2(path: Path) -> Usage:
        cpu = _read_flat_keyed(path / "cpu.stat")
        memory_stat = _read_flat_keyed(path / "memory.stat")
        memory_usage = _read_int(path / "memory.current")
        usage = Usage(
            cpu_usage_seconds=cpu.get("usage_usec", 0) / 1e6,
            cpu_user_seconds=cpu.get("user_usec", 0) / 1e6,
            cpu_system_seconds=cpu.get("system_usec", 0) / 1e6,
            cfs_periods=cpu.get("nr_periods", 0),
            cfs_throttled_periods=cpu.get("nr_throttled", 0),
            cfs_throttled_seconds=cpu.get("throttled_usec", 0) / 1e6,
            memory_usage_bytes=memory_usage,
            memory_working_set_bytes=max(memory_usage - memory_stat.get("inactive_file", 0), 0),
            memory_rss_bytes=memory_stat.get("anon", 0),
            memory_cache_bytes=memory_stat.get("file", 0),
        )
        io_stat = path / "io.stat"
        if io_stat.exists():
            for line in io_stat.read_text().splitlines():
                device, *pairs = line.split()
                fields = dict(pair.split("=", 1) for pair in pairs)
                usage.io_read_bytes[device] = int(fields.get("rbytes", 0))
                usage.io_write_bytes[device] = int(fields.get("wbytes", 0))
        return usage
