"""The exporter against real containers: resource counters move, Docker state is reported."""

from __future__ import annotations

import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import docker

from dockpulse_exporter.cgroups import CgroupReader
from dockpulse_exporter.devices import DeviceNames
from dockpulse_exporter.docker_watch import DockerWatcher, container_from_inspect
from dockpulse_exporter.model import Container
from dockpulse_exporter.sampler import Sampler
from dockpulse_stack.images import run_docker_build
from testkit.helpers import value, wait_for_samples, wait_until


def test_cpu_burner_shows_cpu_time_rising(exporter, run_container) -> None:
    burner = run_container("while :; do :; done")
    idler = run_container("sleep 300")

    def cpu_seconds(name: str) -> float | None:
        return value(exporter.scrape(), "container_cpu_usage_seconds_total", name=name)

    wait_until(lambda: cpu_seconds(idler.name) is not None)
    first = {c.name: wait_until(lambda c=c: cpu_seconds(c.name)) for c in (burner,)}
    idle_first = cpu_seconds(idler.name)
    time.sleep(2)
    burn_rate = (cpu_seconds(burner.name) - first[burner.name]) / 2
    idle_rate = (cpu_seconds(idler.name) - idle_first) / 2
    # A busy loop takes a good share of a core even on a loaded machine; sleep takes ~none.
    assert burn_rate > 0.2
    assert idle_rate < 0.05
    user = value(exporter.scrape(), "container_cpu_user_seconds_total", name=burner.name)
    assert user is not None and user > 0.2


def test_memory_held_in_tmpfs_counts_as_usage(exporter, run_container) -> None:
    holder = run_container(
        "dd if=/dev/zero of=/mem/fill bs=1M count=64 && sleep 300", tmpfs={"/mem": ""}
    )

    def usage() -> float | None:
        found = value(exporter.scrape(), "container_memory_usage_bytes", name=holder.name)
        return found if found and found > 64 * 2**20 else None

    assert wait_until(usage) > 64 * 2**20
    samples = exporter.scrape()
    assert value(samples, "container_memory_working_set_bytes", name=holder.name) > 0
    assert value(samples, "container_spec_memory_limit_bytes", name=holder.name) == 0


def test_limits_are_exported(exporter, run_container) -> None:
    limited = run_container("sleep 300", mem_limit="64m", nano_cpus=500_000_000)
    samples = wait_for_samples(
        exporter.scrape,
        lambda s: value(s, "container_spec_cpu_quota", name=limited.name) is not None,
    )
    assert value(samples, "container_spec_memory_limit_bytes", name=limited.name) == 64 * 2**20
    quota = value(samples, "container_spec_cpu_quota", name=limited.name)
    period = value(samples, "container_spec_cpu_period", name=limited.name)
    assert quota / period == 0.5


def test_disk_writes_match_the_kernels_blkio_counters(
    exporter, run_container, tmp_path: Path
) -> None:
    writer = run_container(
        "dd if=/dev/zero of=/data/blob bs=1M count=16 oflag=direct && sleep 300",
        volumes={str(tmp_path): {"bind": "/data", "mode": "rw"}},
    )
    wait_until(lambda: value(exporter.scrape(), "container_up", name=writer.name) == 1)
    time.sleep(1)
    blkio = Path(
        f"/sys/fs/cgroup/blkio/docker/{writer.id}/blkio.throttle.io_service_bytes_recursive"
    )
    names = DeviceNames(Path("/proc"))
    kernel: dict[str, int] = {}
    for line in blkio.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "Write":
            device = names.name(parts[0])
            kernel[device] = kernel.get(device, 0) + int(parts[2])
    samples = exporter.scrape()
    exported = {
        labels["device"]: sample_value
        for name, labels, sample_value in samples
        if name == "container_fs_writes_bytes_total" and labels["name"] == writer.name
    }
    # Some kernels (this VM's among them) account no block IO to cgroups at all; the exporter
    # must then report exactly what the kernel says, and >= 16 MiB where the kernel counts.
    assert exported == kernel
    if kernel:
        assert sum(exported.values()) >= 16 * 2**20


def test_exit_code_and_stopped_container_is_down(exporter, run_container) -> None:
    failing = run_container("exit 3")

    def exited() -> bool:
        samples = exporter.scrape()
        return value(samples, "container_state", name=failing.name, state="exited") == 1

    wait_until(exited)
    samples = exporter.scrape()
    assert value(samples, "container_up", name=failing.name) == 0
    assert value(samples, "container_exit_code", name=failing.name) == 3
    # A stopped container has no resource series, only its state.
    assert value(samples, "container_cpu_usage_seconds_total", name=failing.name) is None


def test_docker_stop_turns_container_down(exporter, run_container) -> None:
    sleeper = run_container("sleep 300")
    wait_until(lambda: value(exporter.scrape(), "container_up", name=sleeper.name) == 1)
    sleeper.stop(timeout=1)
    wait_until(lambda: value(exporter.scrape(), "container_up", name=sleeper.name) == 0, timeout=10)


def test_oom_killed_container_is_flagged(exporter, run_container) -> None:
    # Holds ~100 MB in a shell variable under a 16 MB limit without swap: the OOM killer ends it.
    hog = run_container(
        "x=$(head -c 100000000 /dev/zero | tr '\\0' a); sleep 300",
        mem_limit="16m",
        memswap_limit="16m",
    )
    wait_until(lambda: value(exporter.scrape(), "container_oom_killed", name=hog.name) == 1)
    assert value(exporter.scrape(), "container_up", name=hog.name) == 0


def test_restarts_are_counted(exporter, run_container) -> None:
    flapping = run_container(
        "sleep 0.3; exit 1", restart_policy={"Name": "on-failure", "MaximumRetryCount": 3}
    )
    assert wait_until(
        lambda: (
            (value(exporter.scrape(), "container_restarts_total", name=flapping.name) or 0) >= 2
        ),
        timeout=30,
    )


def test_failing_healthcheck_is_unhealthy(exporter, run_container) -> None:
    sick = run_container(
        "sleep 300",
        healthcheck={"test": ["CMD", "false"], "interval": 500_000_000, "retries": 1},
    )
    healthy = run_container(
        "sleep 300",
        healthcheck={"test": ["CMD", "true"], "interval": 500_000_000, "retries": 1},
    )
    plain = run_container("sleep 300")

    def status(name: str, state: str) -> bool:
        return value(exporter.scrape(), "container_health_status", name=name, status=state) == 1

    wait_until(lambda: status(sick.name, "unhealthy"), timeout=20)
    wait_until(lambda: status(healthy.name, "healthy"), timeout=20)
    assert status(plain.name, "none")


def test_threshold_and_expect_running_labels(exporter, run_container) -> None:
    tuned = run_container(
        "sleep 300",
        labels={
            "dockpulse.cpu_threshold": "80",
            "dockpulse.memory_threshold": "75%",
            "dockpulse.expect_running": "false",
            "dockpulse.memory_forecast_horizon": "2h",
        },
    )
    untuned = run_container(
        "sleep 300",
        labels={"dockpulse.cpu_threshold": "lots", "dockpulse.memory_forecast_horizon": "soon"},
    )
    samples = wait_for_samples(
        exporter.scrape, lambda s: value(s, "container_up", name=untuned.name)
    )
    assert value(samples, "dockpulse_container_cpu_threshold_percent", name=tuned.name) == 80
    assert value(samples, "dockpulse_container_memory_threshold_percent", name=tuned.name) == 75
    assert value(samples, "dockpulse_container_expected_running", name=tuned.name) == 0
    horizon = "dockpulse_container_memory_forecast_horizon_seconds"
    assert value(samples, horizon, name=tuned.name) == 7200
    assert value(samples, horizon, name=untuned.name) is None  # not a duration: left out
    assert value(samples, "dockpulse_container_expected_running", name=untuned.name) == 1
    # A label that is not a number is ignored, not exported as garbage.
    assert value(samples, "dockpulse_container_cpu_threshold_percent", name=untuned.name) is None


def test_a_docker_build_step_is_not_expected_to_keep_running(
    exporter, engine, busybox, tmp_path
) -> None:
    """`make demo` rebuilds images on the engine it watches: the classic builder's step
    containers come and go, and must not be mailed as down or missing."""
    dockerfile = tmp_path / "Dockerfile"
    # A step of its own each run: a cached step would run no container.
    dockerfile.write_text(f"FROM {busybox}\nRUN echo {uuid.uuid4().hex} && sleep 4\n")
    tag = f"dockpulse-test/build-step:{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(max_workers=1) as pool:
        build = pool.submit(run_docker_build, engine, tag, dockerfile, busybox, tmp_path)

        def step_seen(samples):
            if build.done():
                build.result()  # a failed build fails here, with its output
            return any(
                lbl.get("image", "").startswith("sha256:")
                for n, lbl, _ in samples
                if n == "container_up"
            )

        samples = wait_for_samples(exporter.scrape, step_seen)
        step = next(
            lbl["name"]
            for n, lbl, _ in samples
            if n == "container_up" and lbl["image"].startswith("sha256:")
        )
        assert value(samples, "container_up", name=step) == 1
        assert value(samples, "dockpulse_container_expected_running", name=step) == 0
        build.result(timeout=60)
    with closing(engine.client()) as client:
        client.images.remove(tag)


def labels_of(samples, metric: str, name: str) -> dict[str, str]:
    return next(lbl for n, lbl, _ in samples if n == metric and lbl.get("name") == name)


def test_whitelisted_labels_become_prometheus_labels(start_exporter, run_container) -> None:
    exporter = start_exporter(container_labels=["com.example.team"])
    owned = run_container(
        "sleep 300",
        labels={"com.example.team": "payments", "secret": "x", "com.docker.compose.service": "a"},
    )
    samples = wait_for_samples(exporter.scrape, lambda s: value(s, "container_up", name=owned.name))
    labels = labels_of(samples, "container_up", owned.name)
    assert labels["container_label_com_example_team"] == "payments"
    assert labels["container_label_com_docker_compose_service"] == "a"  # Compose's stay in
    assert "container_label_secret" not in labels
    # `id` is the cgroup path, as cAdvisor sets it (cgroup v1, cgroupfs driver here).
    assert labels["id"] == f"/docker/{owned.id}" and labels["image"]


def test_every_docker_label_by_default_and_deny_list(start_exporter, run_container) -> None:
    everything = start_exporter()
    denied = start_exporter(container_labels={"deny": ["org.label-schema.*"]})
    owned = run_container(
        "sleep 300", labels={"org.label-schema.group": "monitoring", "com.example.team": "web"}
    )
    for exporter, schema_group in ((everything, "monitoring"), (denied, None)):
        samples = wait_for_samples(
            exporter.scrape,
            lambda s: value(s, "container_memory_usage_bytes", name=owned.name) is not None,
        )
        labels = labels_of(samples, "container_memory_usage_bytes", owned.name)
        assert labels.get("container_label_org_label_schema_group") == schema_group
        assert labels["container_label_com_example_team"] == "web"


def test_cadvisor_memory_and_filesystem_families(start_exporter, run_container) -> None:
    exporter = start_exporter(filesystem_interval="500ms")
    writer = run_container(
        "head -c 3000000 /dev/zero > /tmp/blob && sleep 300",
        mem_limit="64m",
        mem_reservation="32m",
    )

    def layer_written(samples) -> bool:
        return (value(samples, "container_fs_usage_bytes", name=writer.name) or 0) >= 3_000_000

    samples = wait_for_samples(exporter.scrape, layer_written, timeout=30)
    name = writer.name
    assert value(samples, "container_spec_memory_reservation_limit_bytes", name=name) == 32 * 2**20
    assert value(samples, "container_memory_max_usage_bytes", name=name) > 0
    assert value(samples, "container_memory_swap", name=name) is not None
    limit = value(samples, "container_fs_limit_bytes", name=name)
    assert limit > value(samples, "container_fs_usage_bytes", name=name)
    total = value(samples, "container_fs_inodes_total", name=name)
    assert 0 < value(samples, "container_fs_inodes_free", name=name) <= total
    assert value(samples, "container_fs_io_current", name=name) >= 0
    device = labels_of(samples, "container_fs_usage_bytes", name)["device"]
    assert device.startswith("/dev/")


def test_machine_wide_root_cgroup_series(exporter) -> None:
    samples = wait_for_samples(
        exporter.scrape, lambda s: value(s, "container_fs_limit_bytes", id="/") is not None
    )
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    total = int(meminfo["MemTotal"].split()[0]) * 1024
    root = {"id": "/", "name": "", "image": ""}
    assert 0 < value(samples, "container_memory_usage_bytes", **root) <= total
    assert 0 < value(samples, "container_memory_rss", **root) <= total
    assert value(samples, "container_cpu_system_seconds_total", **root) > 0
    interfaces = {
        labels["interface"]
        for n, labels, _ in samples
        if n == "container_network_receive_bytes_total" and labels["id"] == "/"
    }
    assert interfaces and "lo" not in interfaces
    # The root series is no container: no state series for it.
    assert value(samples, "container_up", id="/") is None


def test_stats_api_fallback_is_counted_and_logged_once(
    start_exporter, run_container, tmp_path: Path
) -> None:
    # No cgroup tree where the exporter looks: every container goes through Docker's stats API.
    (tmp_path / "no-cgroups").mkdir()
    exporter = start_exporter(cgroup_root=str(tmp_path / "no-cgroups"))
    sleeper = run_container("sleep 300")
    samples = wait_for_samples(
        exporter.scrape,
        lambda s: value(s, "container_memory_usage_bytes", name=sleeper.name) is not None,
    )
    assert value(samples, "dockpulse_stats_api_containers") >= 1
    assert value(samples, "container_memory_max_usage_bytes", name=sleeper.name) > 0
    time.sleep(1.5)  # several refreshes at 300 ms
    lines = [line for line in exporter.service.log.read_text().splitlines() if sleeper.name in line]
    assert len(lines) == 1 and "stats API" in lines[0]


def test_loopback_is_not_exported(exporter, run_container) -> None:
    # network none: the container's namespace holds only `lo`, which cAdvisor leaves out.
    isolated = run_container("sleep 300")
    samples = wait_for_samples(
        exporter.scrape,
        lambda s: value(s, "container_cpu_usage_seconds_total", name=isolated.name) is not None,
    )
    interfaces = {
        labels.get("interface")
        for metric, labels, _ in samples
        if metric.startswith("container_network_") and labels.get("name") == isolated.name
    }
    assert interfaces == set()


def test_child_process_oom_kill_is_counted_while_the_container_runs(
    exporter, run_container
) -> None:
    # A subshell grows past the 16 MB limit and is OOM-killed; the container itself runs on.
    survivor = run_container(
        "(x=$(head -c 100000000 /dev/zero | tr '\\0' a)); sleep 300",
        mem_limit="16m",
        memswap_limit="16m",
    )

    def oom_events() -> float | None:
        found = value(exporter.scrape(), "container_oom_events_total", name=survivor.name)
        return found if found else None

    assert wait_until(oom_events) >= 1
    samples = exporter.scrape()
    assert value(samples, "container_up", name=survivor.name) == 1
    assert value(samples, "container_oom_killed", name=survivor.name) == 0


def test_docker_watcher_reads_the_engines_cgroup_driver(engine) -> None:
    watcher = DockerWatcher(engine.host, resync_interval=60, on_change=lambda: None)
    with closing(docker.APIClient(base_url=engine.host)) as client:
        watcher.resync(client)
        assert watcher.cgroup_driver == client.info()["CgroupDriver"]
    assert watcher.cgroup_driver in ("cgroupfs", "systemd")


class StaleDockerView:
    """Docker's view of one container taken while it ran, as the watcher holds it between the
    container's death and the `die` event (a stand-in for that moment, which no test can time)."""

    def __init__(self, container: Container) -> None:
        self.container = container
        self.docker_up = True
        self.cgroup_driver = "cgroupfs"
        self.api = None  # a stats API call would fail the test below

    def containers(self) -> list[Container]:
        return [self.container]


def test_a_stop_is_not_a_lost_cgroup(engine, run_container, caplog) -> None:
    sleeper = run_container("sleep 300")
    with closing(engine.client()) as client:
        running = container_from_inspect(client.api.inspect_container(sleeper.id))
    cgroups = CgroupReader(Path("/sys/fs/cgroup"), Path("/proc"))
    sampler = Sampler(StaleDockerView(running), cgroups, interval=60)  # type: ignore[arg-type]
    first = sampler.refresh()
    assert first.samples[0].usage is not None and first.stats_api_containers == 0
    sleeper.kill()
    sleeper.wait(timeout=20)
    with caplog.at_level(logging.WARNING):
        after = sampler.refresh()  # its open files fail
        again = sampler.refresh()  # its cgroup cannot be found any more
    for snapshot in (after, again):
        assert snapshot.samples[0].usage is None
        assert snapshot.stats_api_containers == 0
    assert "cgroup not found" not in caplog.text
