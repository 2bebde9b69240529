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
    io_read_bytes: dict[str, int] = field(default_factory=dict)  # by device "major:minor"
    io_write_bytes: dict[str, int] = field(default_factory=dict)
    network: dict[str, NetworkCounters] = field(default_factory=dict)  # by interface


@dataclass(frozen=True, slots=True)
class Sample:
    """One container with its usage (None when it is not running or could not be read)."""

    container: Container
    usage: Usage | None
    seen_at: float


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one background refresh produced; scrapes read only this."""

    samples: tuple[Sample, ...] = ()
    docker_up: bool = False
    refresh_seconds: float = 0.0
    taken_at: float = 0.0
