"""Reading a container's resource usage straight from its cgroup files (v1 and v2).

A read costs a few file reads per container, where Docker's stats API costs about a second.
Files are found and opened once per container; each refresh re-reads them with `pread` at
offset 0 (the kernel regenerates the content), which avoids an open/close per file. A container
whose cgroup cannot be found returns None, and the caller falls back to the stats API.
"""

from __future__ import annotations

import os
from pathlib import Path

from dockpulse_exporter.model import Container, NetworkCounters, Usage

USER_HZ = os.sysconf("SC_CLK_TCK")
V1_CONTROLLERS = ("cpuacct", "cpu", "memory", "blkio")


READ_SIZE = 65536
V1_FILES = {
    "cpuacct.usage": "cpuacct",
    "cpuacct.stat": "cpuacct",
    "cpu.stat": "cpu",
    "memory.usage_in_bytes": "memory",
    "memory.stat": "memory",
    "blkio.throttle.io_service_bytes_recursive": "blkio",
}
V2_FILES = ("cpu.stat", "memory.current", "memory.stat", "io.stat")


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
    start = 0 if data.startswith(key + b" ") else data.find(b"\n" + key + b" ") + 1
    if start == 0 and not data.startswith(key + b" "):
        return 0
    end = data.find(b"\n", start)
    return int(data[start + len(key) + 1 : end if end >= 0 else None])


class OpenFiles:
    """A container's cgroup files, kept open and re-read with pread."""

    def __init__(self, paths: dict[str, Path]) -> None:
        self.fds: dict[str, int] = {}
        try:
            for name, path in paths.items():
                self.fds[name] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self.close()
            raise

    def read(self, name: str) -> bytes:
        return os.pread(self.fds[name], READ_SIZE, 0)

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds = {}


def parse_net_dev(data: bytes) -> dict[str, NetworkCounters]:
    """Per-interface counters from a /proc/<pid>/net/dev (the container's network namespace)."""
    counters: dict[str, NetworkCounters] = {}
    for line in data.split(b"\n")[2:]:
        interface, _, numbers = line.partition(b":")
        if not numbers:
            continue
        fields = [int(value) for value in numbers.split()]
        counters[interface.strip().decode()] = NetworkCounters(
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
        self._files: dict[str, OpenFiles] = {}
        self._network: dict[str, tuple[int, int]] = {}  # container id -> (pid, fd)

    def forget(self, container_id: str) -> None:
        files = self._files.pop(container_id, None)
        if files is not None:
            files.close()
        network = self._network.pop(container_id, None)
        if network is not None:
            os.close(network[1])

    def read(self, container: Container) -> Usage | None:
        """The container's usage, or None when its cgroup is not readable here."""
        files = self._files.get(container.id) or self._open(container)
        if files is None:
            return None
        try:
            usage = self._read_v2(files) if self.unified else self._read_v1(files)
        except (OSError, ValueError, IndexError):
            self.forget(container.id)
            return None
        if container.network_mode != "host" and container.pid > 0:
            usage.network = self._read_network(container)
        return usage

    def _read_network(self, container: Container) -> dict[str, NetworkCounters]:
        """Network counters via the container's init process; {} when not visible here."""
        network = self._network.get(container.id)
        if network is None or network[0] != container.pid:
            if network is not None:
                os.close(network[1])
                del self._network[container.id]
            path = self.proc_root / str(container.pid) / "net" / "dev"
            try:
                network = (container.pid, os.open(path, os.O_RDONLY | os.O_CLOEXEC))
            except OSError:
                return {}
            self._network[container.id] = network
        try:
            return parse_net_dev(os.pread(network[1], READ_SIZE, 0))
        except (OSError, ValueError, IndexError):
            return {}

    def _open(self, container: Container) -> OpenFiles | None:
        directories = self._locate_by_candidates(container) or self._locate_by_proc(container)
        if directories is None:
            return None
        if self.unified:
            paths = {name: directories[""] / name for name in V2_FILES}
            if not paths["io.stat"].exists():
                del paths["io.stat"]
        else:
            paths = {name: directories[ctrl] / name for name, ctrl in V1_FILES.items()}
            blkio = paths["blkio.throttle.io_service_bytes_recursive"]
            if not blkio.exists():
                paths["blkio.throttle.io_service_bytes_recursive"] = blkio.with_name(
                    "blkio.throttle.io_service_bytes"
                )
        try:
            files = OpenFiles(paths)
        except OSError:
            return None
        self._files[container.id] = files
        return files

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
    def _read_v1(files: OpenFiles) -> Usage:
        cpu_times = _keyed(files.read("cpuacct.stat"))
        cfs = _keyed(files.read("cpu.stat"))
        memory_stat = files.read("memory.stat")
        memory_usage = int(files.read("memory.usage_in_bytes"))
        inactive_file = _pick(memory_stat, b"total_inactive_file")
        usage = Usage(
            cpu_usage_seconds=int(files.read("cpuacct.usage")) / 1e9,
            cpu_user_seconds=cpu_times.get(b"user", 0) / USER_HZ,
            cpu_system_seconds=cpu_times.get(b"system", 0) / USER_HZ,
            cfs_periods=cfs.get(b"nr_periods", 0),
            cfs_throttled_periods=cfs.get(b"nr_throttled", 0),
            cfs_throttled_seconds=cfs.get(b"throttled_time", 0) / 1e9,
            memory_usage_bytes=memory_usage,
            memory_working_set_bytes=max(memory_usage - inactive_file, 0),
            memory_rss_bytes=_pick(memory_stat, b"total_rss"),
            memory_cache_bytes=_pick(memory_stat, b"total_cache"),
        )
        for line in files.read("blkio.throttle.io_service_bytes_recursive").split(b"\n"):
            parts = line.split()
            if len(parts) != 3:
                continue
            device, operation, value = parts[0].decode(), parts[1], int(parts[2])
            if operation == b"Read":
                usage.io_read_bytes[device] = usage.io_read_bytes.get(device, 0) + value
            elif operation == b"Write":
                usage.io_write_bytes[device] = usage.io_write_bytes.get(device, 0) + value
        return usage

    @staticmethod
    def _read_v2(files: OpenFiles) -> Usage:
        cpu = _keyed(files.read("cpu.stat"))
        memory_stat = _keyed(files.read("memory.stat"))
        memory_usage = int(files.read("memory.current"))
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
        )
        if "io.stat" in files.fds:
            for line in files.read("io.stat").decode().splitlines():
                device, *pairs = line.split()
                fields = dict(pair.split("=", 1) for pair in pairs)
                usage.io_read_bytes[device] = int(fields.get("rbytes", 0))
                usage.io_write_bytes[device] = int(fields.get("wbytes", 0))
        return usage
