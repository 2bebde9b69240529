"""Golden files: the cgroup readers on fixed file trees, and the whole exposition text.

cgroup v2 cannot be exercised by a real container on this machine (v1 controllers), so its reader
runs here on a file tree laid out as the kernel lays it out. A renamed metric or label shows up
as a diff of `golden/exposition.txt` (regenerate with DOCKPULSE_UPDATE_GOLDEN=1).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from dockpulse_exporter.cgroups import USER_HZ, CgroupReader
from dockpulse_exporter.collector import ContainerCollector, ExporterCollector
from dockpulse_exporter.config import LabelFilter, Probe
from dockpulse_exporter.exposition import Exposition
from dockpulse_exporter.model import Container, Filesystem, MachineSample, Sample, Snapshot, Usage
from dockpulse_exporter.probes import ProbeResult

GOLDEN = Path(__file__).parent / "golden"
CONTAINER_ID = "c0ffee" * 10 + "abcd"


def make_container(**overrides: object) -> Container:
    fields: dict[str, object] = {
        "id": CONTAINER_ID,
        "name": "webapp",
        "image": "dockpulse/webapp:local",
        "labels": {"com.docker.compose.project": "demo", "com.docker.compose.service": "webapp"},
        "state": "running",
        "pid": 4242,
        "exit_code": 0,
        "oom_killed": False,
        "restart_count": 2,
        "health": "healthy",
        "started_at": 1_700_000_000.0,
        "network_mode": "default",
        "cgroup_parent": "",
        "memory_limit_bytes": 256 * 2**20,
        "cpu_quota_us": 50_000,
        "cpu_period_us": 100_000,
    }
    fields.update(overrides)
    return Container(**fields)  # type: ignore[arg-type]


def write_tree(root: Path, files: dict[str, str]) -> None:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def proc_net_dev(pid: int) -> dict[str, str]:
    header = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame c m|...\n"
    eth0 = "  eth0: 1000 10 1 2 0 0 0 0 2000 20 3 4 0 0 0 0\n"
    lo = "    lo: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0\n"  # left out, as cAdvisor does
    return {f"proc/{pid}/net/dev": header + lo + eth0}


def test_cgroup_v2_reader(tmp_path: Path) -> None:
    scope = f"sys/system.slice/docker-{CONTAINER_ID}.scope"
    write_tree(
        tmp_path,
        {
            "sys/cgroup.controllers": "cpu io memory pids\n",
            f"{scope}/cpu.stat": "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n"
            "nr_periods 40\nnr_throttled 4\nthrottled_usec 300000\n",
            f"{scope}/memory.current": "104857600\n",
            f"{scope}/memory.stat": "anon 73400320\nfile 31457280\ninactive_file 10485760\n",
            f"{scope}/io.stat": "8:0 rbytes=4096 wbytes=16777216 rios=1 wios=16 dbytes=0 dios=0\n",
            f"{scope}/memory.swap.current": "8192\n",
            f"{scope}/memory.peak": "209715200\n",
            **proc_net_dev(4242),
        },
    )
    usage = CgroupReader(tmp_path / "sys", tmp_path / "proc").read(make_container())
    assert usage is not None
    assert usage.cpu_usage_seconds == 2.5 and usage.cpu_system_seconds == 0.5
    assert (usage.cfs_periods, usage.cfs_throttled_periods) == (40, 4)
    assert usage.memory_usage_bytes == 100 * 2**20
    assert usage.memory_working_set_bytes == 90 * 2**20
    assert (usage.memory_rss_bytes, usage.memory_cache_bytes) == (70 * 2**20, 30 * 2**20)
    assert usage.io_write_bytes == {"8:0": 16 * 2**20} and usage.io_read_bytes == {"8:0": 4096}
    assert usage.io_reads == {"8:0": 1} and usage.io_writes == {"8:0": 16}
    assert (usage.memory_swap_bytes, usage.memory_max_usage_bytes) == (8192, 200 * 2**20)
    assert usage.network["eth0"].receive_bytes == 1000
    assert usage.network["eth0"].transmit_dropped == 4
    assert set(usage.network) == {"eth0"}  # not lo


def test_cgroup_v1_reader_with_systemd_driver(tmp_path: Path) -> None:
    relative = f"system.slice/docker-{CONTAINER_ID}.scope"
    write_tree(
        tmp_path,
        {
            f"sys/cpuacct/{relative}/cpuacct.usage": "3000000000\n",
            f"sys/cpuacct/{relative}/cpuacct.stat": f"user {2 * USER_HZ}\nsystem {USER_HZ}\n",
            f"sys/cpu/{relative}/cpu.stat": "nr_periods 10\nnr_throttled 1\nthrottled_time 5\n",
            f"sys/memory/{relative}/memory.usage_in_bytes": "2000\n",
            f"sys/memory/{relative}/memory.stat": "cache 1\nrss 2\ntotal_cache 700\n"
            "total_rss 1200\ntotal_inactive_file 500\n",
            f"sys/memory/{relative}/memory.max_usage_in_bytes": "4000\n",
            f"sys/blkio/{relative}/blkio.throttle.io_service_bytes_recursive": (
                "8:0 Read 100\n8:0 Write 300\n8:0 Sync 400\n8:0 Total 400\nTotal 400\n"
            ),
            f"sys/blkio/{relative}/blkio.throttle.io_serviced_recursive": (
                "8:0 Read 1\n8:0 Write 3\n8:0 Sync 4\n8:0 Total 4\nTotal 4\n"
            ),
            "proc/diskstats": "   8       0 sda 1 0 2 0 3 0 4 0 0 0 0 0 0 0 0 0 0\n",
        },
    )
    reader = CgroupReader(tmp_path / "sys", tmp_path / "proc")
    usage = reader.read(make_container(pid=0))
    assert usage is not None
    assert (usage.cpu_usage_seconds, usage.cpu_user_seconds, usage.cpu_system_seconds) == (3, 2, 1)
    assert usage.memory_working_set_bytes == 1500
    assert (usage.memory_rss_bytes, usage.memory_cache_bytes) == (1200, 700)
    # Devices are named as cAdvisor names them.
    assert usage.io_read_bytes == {"/dev/sda": 100} and usage.io_write_bytes == {"/dev/sda": 300}
    assert usage.io_reads == {"/dev/sda": 1} and usage.io_writes == {"/dev/sda": 3}
    assert usage.memory_max_usage_bytes == 4000
    assert reader.cgroup_id(make_container(pid=0)) == f"/{relative}"
    # Files stay open between refreshes and are re-read: a new value shows up.
    (tmp_path / f"sys/cpuacct/{relative}/cpuacct.usage").write_text("4000000000\n")
    assert reader.read(make_container(pid=0)).cpu_usage_seconds == 4


def test_unknown_cgroup_layout_returns_none(tmp_path: Path) -> None:
    (tmp_path / "sys").mkdir()
    assert CgroupReader(tmp_path / "sys", tmp_path / "proc").read(make_container()) is None


def test_exposition_matches_golden_file(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "sys/cgroup.controllers": "cpu io memory\n",
            f"sys/docker/{CONTAINER_ID}/cpu.stat": "usage_usec 1500000\nuser_usec 1000000\n"
            "system_usec 500000\nnr_periods 20\nnr_throttled 2\nthrottled_usec 100000\n",
            f"sys/docker/{CONTAINER_ID}/memory.current": "1048576\n",
            f"sys/docker/{CONTAINER_ID}/memory.stat": "anon 524288\nfile 524288\n"
            "inactive_file 262144\n",
            f"sys/docker/{CONTAINER_ID}/memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
            **proc_net_dev(4242),
        },
    )
    running = make_container()
    stopped = make_container(
        id="dead" * 16,
        name="worker",
        labels={
            "dockpulse.cpu_threshold": "80",
            "dockpulse.expect_running": "false",
            "dockpulse.memory_forecast_horizon": "2h",
        },
        state="exited",
        pid=0,
        exit_code=137,
        oom_killed=True,
        health="none",
        memory_limit_bytes=0,
        cpu_quota_us=0,
        cpu_period_us=0,
    )
    reader = CgroupReader(tmp_path / "sys", tmp_path / "proc")
    usage = reader.read(running)
    assert reader.cgroup_id(running) == f"/docker/{CONTAINER_ID}"
    machine = MachineSample(
        usage=Usage(cpu_usage_seconds=100, memory_usage_bytes=2**30, memory_rss_bytes=2**29),
        filesystem=Filesystem("/dev/vda", 2**40, 1000, 600),
        filesystem_used_bytes=2**39,
        io_current=3,
    )
    snapshot = Snapshot(
        samples=(
            Sample(running, usage, 1_700_000_100.0, reader.cgroup_id(running), 8192),
            Sample(stopped, None, 1_700_000_100.0, f"/docker/{'dead' * 16}"),
        ),
        machine=machine,
        docker_up=True,
        refresh_seconds=0.25,
        taken_at=1_700_000_100.0,
    )
    probe = ProbeResult(Probe(name="webapp", url="http://127.0.0.1:8000/health", slow_threshold=1))
    probe.record(True, 0.03, 200)
    containers = CollectorRegistry(auto_describe=False)
    collector = ContainerCollector(lambda: snapshot, LabelFilter(deny=["dockpulse.*"]))
    containers.register(collector)
    rest = CollectorRegistry(auto_describe=False)
    rest.register(
        ExporterCollector(
            snapshot=lambda: snapshot,
            probe_results=lambda: [probe],
            errors_total=lambda: 1,
            machine=(2, 24 * 2**30),
        )
    )
    exposition = Exposition(lambda: collector.metrics.families(snapshot), rest)
    exposition.update_containers()
    text = b"".join(exposition.body()).decode()
    golden = GOLDEN / "exposition.txt"
    if os.environ.get("DOCKPULSE_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()
    # The fast renderer says exactly what prometheus_client would, and gzip is the same text.
    assert text == (generate_latest(rest) + generate_latest(containers)).decode()
    assert gzip.decompress(b"".join(exposition.body(gzipped=True))).decode() == text
