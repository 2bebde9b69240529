"""What the exporter knows: containers (from Docker) and their resource usage (from cgroups)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Container:
    """One container as Docker describes it; refreshed from `inspect` on every event."""

    id: str
    name: str
    image: str
    labels: dict[str, str]
    state: str  # created, running, paused, restarting, removing, exited, dead
    pid: int
    exit_code: int
    oom_killed: bool
    restart_count: int
    health: str  # healthy, unhealthy, starting, none
    started_at: float  # unix seconds, 0 when never started
    network_mode: str
    cgroup_parent: str
    memory_limit_bytes: int  # 0 when unlimited
    cpu_quota_us: int  # 0 when unlimited
    cpu_period_us: int
    memory_reservation_bytes: int = 0  # 0 when none
    address: str = ""  # its IP on a Docker network (inspect's NetworkSettings), "" when none
    image_id: str = ""  # sha256:... of the image it was created from

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclass(slots=True)
class NetworkCounters:
    receive_bytes: int = 0
    receive_packets: int = 0
    receive_errors: int = 0
    receive_dropped: int = 0
    transmit_bytes: int = 0
    transmit_packets: int = 0
    transmit_errors: int = 0
    transmit_dropped: int = 0


@dataclass(slots=True)
class Usage:
    """Resource counters of one running container at one instant (cAdvisor's units)."""

    cpu_usage_seconds: float = 0.0
    cpu_user_seconds: float = 0.0
    cpu_system_seconds: float = 0.0
    cfs_periods: int = 0
    cfs_throttled_periods: int = 0
    cfs_throttled_seconds: float = 0.0
    memory_usage_bytes: int = 0
    memory_working_set_bytes: int = 0
    memory_rss_bytes: int = 0
    memory_cache_bytes: int = 0
    memory_swap_bytes: int = 0
    memory_max_usage_bytes: int | None = None  # None where the kernel keeps no peak
    oom_events: int | None = None  # OOM kills in the cgroup; None where the kernel keeps none
    io_read_bytes: dict[str, int] = field(default_factory=dict)  # by device "major:minor"
    io_write_bytes: dict[str, int] = field(default_factory=dict)
    io_reads: dict[str, int] = field(default_factory=dict)  # completed read operations
    io_writes: dict[str, int] = field(default_factory=dict)
    network: dict[str, NetworkCounters] = field(default_factory=dict)  # by interface


@dataclass(frozen=True, slots=True)
class Filesystem:
    """The filesystem holding Docker's data (writable layers), as statvfs and diskstats see it."""

    device: str  # e.g. /dev/vda, as cAdvisor names it
    capacity_bytes: int
    inodes_total: int
    inodes_free: int


@dataclass(frozen=True, slots=True)
class Sample:
    """One container with its usage (None when it is not running or could not be read)."""

    container: Container
    usage: Usage | None
    seen_at: float
    cgroup_id: str = ""  # cAdvisor's `id`: the cgroup path, e.g. /docker/<id>
    writable_layer_bytes: int | None = None  # from the slow filesystem pass


@dataclass(frozen=True, slots=True)
class MachineSample:
    """The whole host as cAdvisor's root cgroup (`id="/"`) reports it."""

    usage: Usage
    filesystem: Filesystem | None
    filesystem_used_bytes: int
    io_current: int  # I/Os in progress on the Docker filesystem's device


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one background refresh produced; scrapes read only this."""

    samples: tuple[Sample, ...] = ()
    machine: MachineSample | None = None
    docker_up: bool = False
    refresh_seconds: float = 0.0  # reading Docker's state and every cgroup
    taken_at: float = 0.0
    stats_api_containers: int = 0  # running containers read through Docker's stats API
