"""Reading a container's resource usage straight from its cgroup files (v1 and v2).

A read costs a few file reads per container, where Docker's stats API costs a round trip.
Files are found and opened once per container; each refresh re-reads them with `pread` at
offset 0 (the kernel regenerates the content), which avoids an open/close per file. A container
whose cgroup cannot be found returns None, and the caller falls back to the stats API.
"""

from __future__ import annotations

import os
from pathlib import Path

from dockpulse_exporter.cgroup_paths import CgroupLocator
from dockpulse_exporter.devices import DeviceNames
from dockpulse_exporter.model import Container, NetworkCounters, Usage

USER_HZ = os.sysconf("SC_CLK_TCK")
READ_SIZE = 65536
V1_FILES = {
    "cpuacct.usage": "cpuacct",
    "cpuacct.stat": "cpuacct",
    "cpu.stat": "cpu",
    "memory.usage_in_bytes": "memory",
    "memory.max_usage_in_bytes": "memory",
    "memory.stat": "memory",
    "blkio.throttle.io_service_bytes_recursive": "blkio",
    "blkio.throttle.io_serviced_recursive": "blkio",
    "memory.oom_control": "memory",  # `oom_kill N` since Linux 4.13
}
V1_OPTIONAL = {"memory.max_usage_in_bytes", "memory.oom_control"}
V2_FILES = ("cpu.stat", "memory.current", "memory.stat")
V2_OPTIONAL = ("io.stat", "memory.swap.current", "memory.peak", "memory.events")
# Interfaces cAdvisor leaves out of a container's network (libcontainer's ignored prefixes):
# loopback, the host ends of veth pairs, Docker's and nerdctl's bridges.
IGNORED_INTERFACES = ("lo", "veth", "docker", "nerdctl")


def _keyed(data: bytes) -> dict[bytes, int]:
    """`key value` lines (memory.stat, cpu.stat, cpuacct.stat) as a dict."""
    values: dict[bytes, int] = {}
    for line in data.split(b"\n"):
        key, _, value = line.partition(b" ")
        if value:
            values[key] = int(value)
    return values


def _pick(data: bytes, key: bytes) -> int:
    """The value of one `key value` line in a long keyed file, 0 when absent."""
    if data.startswith(key + b" "):
        start = 0
    else:
        start = data.find(b"\n" + key + b" ") + 1
        if start == 0:
            return 0
    end = data.find(b"\n", start)
    return int(data[start + len(key) + 1 : end if end >= 0 else None])


def _oom_kills(data: bytes | None) -> int | None:
    """`oom_kill` of memory.events (v2) or memory.oom_control (v1); None when not kept."""
    if data is None or b"oom_kill " not in data:
        return None
    return _keyed(data).get(b"oom_kill", 0)


class CgroupGone(Exception):
    """The container's open cgroup files stopped answering: its cgroup was removed, i.e. it
    stopped (Docker's view may not say so yet). Not a cgroup that cannot be found."""


class OpenFiles:
    """A container's cgroup files, kept open and re-read with pread."""

    def __init__(self, paths: dict[str, Path]) -> None:
        self.fds: dict[str, int] = {}
        # The raw contents of the last read and their Usage: unchanged files, same Usage.
        self.last: tuple[tuple[bytes | None, ...], Usage] | None = None
        try:
            for name, path in paths.items():
                self.fds[name] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self.close()
            raise

    def read_all(self) -> dict[str, bytes]:
        return {name: os.pread(fd, READ_SIZE, 0) for name, fd in self.fds.items()}

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds = {}


def parse_net_dev(data: bytes, skip: tuple[str, ...] = ()) -> dict[str, NetworkCounters]:
    """Per-interface counters from a /proc/<pid>/net/dev; interfaces starting with `skip` are
    left out."""
    counters: dict[str, NetworkCounters] = {}
    for line in data.split(b"\n")[2:]:
        interface, _, numbers = line.partition(b":")
        if not numbers:
            continue
        name = interface.strip().decode()
        if skip and name.startswith(skip):
            continue
        fields = [int(value) for value in numbers.split()]
        counters[name] = NetworkCounters(
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

    def __init__(self, root: Path, proc_root: Path, devices: DeviceNames | None = None) -> None:
        self.root = root
        self.proc_root = proc_root
        self.locator = CgroupLocator(root, proc_root)
        self.unified = self.locator.unified
        self.devices = devices or DeviceNames(proc_root)
        self._files: dict[str, OpenFiles] = {}
        self._ids: dict[str, str] = {}  # container id -> cgroup path, kept while it exists
        self._network: dict[str, tuple[int, int]] = {}  # container id -> (pid, fd)

    def cgroup_id(self, container: Container) -> str:
        """cAdvisor's `id` for the container: the cgroup path it had or will have."""
        return self._ids.get(container.id) or self.locator.expected_id(
            container.id, container.cgroup_parent
        )

    def release(self, container_id: str) -> None:
        """Close what a stopped container holds open (its netns stays alive while we hold
        its net/dev); the cgroup path is kept for its `id` label."""
        files = self._files.pop(container_id, None)
        if files is not None:
            files.close()
        network = self._network.pop(container_id, None)
        if network is not None:
            os.close(network[1])

    def forget(self, container_id: str) -> None:
        """The container is gone: close everything and drop its path."""
        self.release(container_id)
        self._ids.pop(container_id, None)

    def open_descriptors(self) -> int:
        return sum(len(files.fds) for files in self._files.values()) + len(self._network)

    def read(self, container: Container) -> Usage | None:
        """The container's usage, or None when its cgroup is not readable here; CgroupGone when
        the files it had open went away with the container."""
        files = self._files.get(container.id) or self._open(container)
        if files is None:
            return None
        try:
            raw = files.read_all()
        except OSError as exc:
            self.release(container.id)
            raise CgroupGone(container.id) from exc
        network = None
        if container.network_mode != "host" and container.pid > 0:
            network = self._read_network(container)
        key = (*raw.values(), network)
        if files.last is not None and files.last[0] == key:
            return files.last[1]  # nothing changed (an idle container): nothing to parse
        try:
            usage = self._parse_v2(raw) if self.unified else self._parse_v1(raw)
            usage.network = parse_net_dev(network, IGNORED_INTERFACES) if network else {}
        except (ValueError, IndexError):
            self.release(container.id)
            return None
        files.last = (key, usage)
        return usage

    def _read_network(self, container: Container) -> bytes | None:
        """The container's net/dev via its init process; None when not visible here."""
        network = self._network.get(container.id)
        if network is None or network[0] != container.pid:
            if network is not None:
                os.close(network[1])
                del self._network[container.id]
            path = self.proc_root / str(container.pid) / "net" / "dev"
            try:
                network = (container.pid, os.open(path, os.O_RDONLY | os.O_CLOEXEC))
            except OSError:
                return None
            self._network[container.id] = network
        try:
            return os.pread(network[1], READ_SIZE, 0)
        except OSError:
            return None

    def _open(self, container: Container) -> OpenFiles | None:
        location = self.locator.locate(container.id, container.pid, container.cgroup_parent)
        if location is None:
            return None
        directories = location.directories
        if self.unified:
            paths = {name: directories[""] / name for name in V2_FILES}
            paths.update(
                (name, directories[""] / name)
                for name in V2_OPTIONAL
                if (directories[""] / name).exists()
            )
        else:
            paths = {}
            for name, controller in V1_FILES.items():
                path = directories[controller] / name
                if not path.exists() and name.startswith("blkio.throttle."):
                    path = path.with_name(name.removesuffix("_recursive"))
                if path.exists() or name not in V1_OPTIONAL:
                    paths[name] = path
        try:
            files = OpenFiles(paths)
        except OSError:
            return None
        self._files[container.id] = files
        self._ids[container.id] = location.cgroup_id
        return files

    def _blkio(self, data: bytes, reads: dict[str, int], writes: dict[str, int]) -> None:
        """Sum a v1 blkio file's Read/Write lines per device (named as cAdvisor names them)."""
        for line in data.split(b"\n"):
            parts = line.split()
            if len(parts) != 3:
                continue
            operation = parts[1]
            target = reads if operation == b"Read" else writes if operation == b"Write" else None
            if target is not None:
                device = self.devices.name(parts[0].decode())
                target[device] = target.get(device, 0) + int(parts[2])

    def _parse_v1(self, raw: dict[str, bytes]) -> Usage:
        cpu_times = _keyed(raw["cpuacct.stat"])
        cfs = _keyed(raw["cpu.stat"])
        memory_stat = raw["memory.stat"]
        memory_usage = int(raw["memory.usage_in_bytes"])
        inactive_file = _pick(memory_stat, b"total_inactive_file")
        peak = raw.get("memory.max_usage_in_bytes")
        usage = Usage(
            cpu_usage_seconds=int(raw["cpuacct.usage"]) / 1e9,
            cpu_user_seconds=cpu_times.get(b"user", 0) / USER_HZ,
            cpu_system_seconds=cpu_times.get(b"system", 0) / USER_HZ,
            cfs_periods=cfs.get(b"nr_periods", 0),
            cfs_throttled_periods=cfs.get(b"nr_throttled", 0),
            cfs_throttled_seconds=cfs.get(b"throttled_time", 0) / 1e9,
            memory_usage_bytes=memory_usage,
            memory_working_set_bytes=max(memory_usage - inactive_file, 0),
            memory_rss_bytes=_pick(memory_stat, b"total_rss"),
            memory_cache_bytes=_pick(memory_stat, b"total_cache"),
            memory_swap_bytes=_pick(memory_stat, b"total_swap"),
            memory_max_usage_bytes=int(peak) if peak is not None else None,
            oom_events=_oom_kills(raw.get("memory.oom_control")),
        )
        service_bytes = raw["blkio.throttle.io_service_bytes_recursive"]
        self._blkio(service_bytes, usage.io_read_bytes, usage.io_write_bytes)
        serviced = raw["blkio.throttle.io_serviced_recursive"]
        self._blkio(serviced, usage.io_reads, usage.io_writes)
        return usage

    def _parse_v2(self, raw: dict[str, bytes]) -> Usage:
        cpu = _keyed(raw["cpu.stat"])
        memory_stat = _keyed(raw["memory.stat"])
        memory_usage = int(raw["memory.current"])
        swap, peak = raw.get("memory.swap.current"), raw.get("memory.peak")
        usage = Usage(
            cpu_usage_seconds=cpu.get(b"usage_usec", 0) / 1e6,
            cpu_user_seconds=cpu.get(b"user_usec", 0) / 1e6,
            cpu_system_seconds=cpu.get(b"system_usec", 0) / 1e6,
            cfs_periods=cpu.get(b"nr_periods", 0),
            cfs_throttled_periods=cpu.get(b"nr_throttled", 0),
            cfs_throttled_seconds=cpu.get(b"throttled_usec", 0) / 1e6,
            memory_usage_bytes=memory_usage,
            memory_working_set_bytes=max(memory_usage - memory_stat.get(b"inactive_file", 0), 0),
            memory_rss_bytes=memory_stat.get(b"anon", 0),
            memory_cache_bytes=memory_stat.get(b"file", 0),
            memory_swap_bytes=int(swap) if swap is not None else 0,
            memory_max_usage_bytes=int(peak) if peak is not None else None,
            oom_events=_oom_kills(raw.get("memory.events")),
        )
        if "io.stat" in raw:
            for line in raw["io.stat"].decode().splitlines():
                device, *pairs = line.split()
                fields = dict(pair.split("=", 1) for pair in pairs)
                name = self.devices.name(device)
                usage.io_read_bytes[name] = int(fields.get("rbytes", 0))
                usage.io_write_bytes[name] = int(fields.get("wbytes", 0))
                usage.io_reads[name] = int(fields.get("rios", 0))
                usage.io_writes[name] = int(fields.get("wios", 0))
        return usage
