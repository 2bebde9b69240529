"""Runs in the guest: containers under both Docker cgroup drivers, the exporter on the host,
its scrape checked against the cgroup files. Writes results.json into the folder it is given.

Stdlib and prometheus_client only (the guest's exporter venv); no network in the guest.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

CGROUP = Path("/sys/fs/cgroup")
EXPORTER_URL = "http://127.0.0.1:9487/metrics"
IMAGE = "busybox:guest"
SLEEP = ["/bin/sleep", "100000"]
MIB = 1024 * 1024


def sh(*args: str, check: bool = True) -> str:
    """Runs a command, returns its stdout."""
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{args}: {done.returncode} {done.stderr.strip()}")
    return done.stdout.strip()


def docker(*args: str, check: bool = True) -> str:
    return sh("docker", *args, check=check)


def run_container(name: str, *options: str, command: list[str], detach: bool = True) -> str:
    """Starts a container of the busybox image with no network; returns its full id."""
    mode = ["-d"] if detach else []
    docker(
        "run", *mode, "--name", name, "--network", "none", *options, IMAGE, *command, check=detach
    )
    return docker("inspect", "-f", "{{.Id}}", name)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.5)


def health(name: str) -> str:
    return docker("inspect", "-f", "{{.State.Health.Status}}", name)


def scrape() -> dict[str, list[tuple[dict[str, str], float]]]:
    """The exporter's exposition as {metric name: [(labels, value)]}."""
    with urllib.request.urlopen(EXPORTER_URL, timeout=30) as response:
        text = response.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples, metric: str, **labels: str) -> float | None:
    for have, number in samples.get(metric, []):
        if all(have.get(k) == v for k, v in labels.items()):
            return number
    return None


def cgroup_dir(driver: str, cid: str) -> Path:
    if driver == "systemd":
        return CGROUP / "system.slice" / f"docker-{cid}.scope"
    return CGROUP / "docker" / cid


def expected_id(driver: str, cid: str) -> str:
    return f"/system.slice/docker-{cid}.scope" if driver == "systemd" else f"/docker/{cid}"


def cpu_usage_seconds(path: Path) -> float:
    for line in (path / "cpu.stat").read_text().splitlines():
        key, number = line.split()
        if key == "usage_usec":
            return int(number) / 1e6
    raise RuntimeError(f"no usage_usec in {path}/cpu.stat")


def memory_events(path: Path) -> dict[str, int]:
    pairs = (line.split() for line in (path / "memory.events").read_text().splitlines())
    return {key: int(number) for key, number in pairs}


class Checks:
    """Each check: its name, whether the exporter agreed with the truth, both values."""

    def __init__(self, driver: str) -> None:
        self.driver = driver
        self.rows: list[dict] = []

    def add(self, name: str, ok: bool, got: object, want: object) -> None:
        self.rows.append(
            {"driver": self.driver, "check": name, "ok": bool(ok), "got": got, "want": want}
        )
        print(("ok  " if ok else "FAIL"), self.driver, name, "got", got, "want", want, flush=True)


def set_driver(driver: str) -> None:
    config = {"bridge": "none", "iptables": False, "exec-opts": [f"native.cgroupdriver={driver}"]}
    Path("/etc/docker/daemon.json").write_text(json.dumps(config))
    sh("systemctl", "restart", "docker")
    wait_for(lambda: sh("docker", "info", check=False) != "", 120, "dockerd")


def start_exporter(log: Path) -> subprocess.Popen:
    exporter = subprocess.Popen(
        ["/opt/dockpulse/bin/dockpulse-exporter", "--refresh.interval", "1s"],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )

    def ready() -> bool:
        try:
            return value(scrape(), "dockpulse_docker_up") == 1
        except OSError:
            return False

    wait_for(ready, 180, "the exporter")
    return exporter


def scenario(driver: str, out: Path) -> list[dict]:
    checks = Checks(driver)
    set_driver(driver)
    info = docker("info", "-f", "{{.CgroupDriver}} {{.CgroupVersion}}")
    checks.add("docker info driver/version", info == f"{driver} 2", info, f"{driver} 2")
    if IMAGE not in docker("images", "--format", "{{.Repository}}:{{.Tag}}"):
        docker("import", "--change", "ENV PATH=/bin", "/opt/busybox-rootfs.tar", IMAGE)
    docker("rm", "-f", *docker("ps", "-aq").split(), check=False)
    ids: dict[str, str] = {}
    # Before the exporter starts: these have exited (or been killed) already.
    ids["exit3"] = run_container("exit3", command=["/bin/sh", "-c", "exit 3"], detach=False)
    ids["oom"] = run_container(
        "oom",
        "--memory",
        "16m",
        "--memory-swap",
        "16m",
        command=["/bin/tail", "/dev/zero"],
        detach=False,
    )
    ids["killed"] = run_container("killed", command=SLEEP)
    docker("kill", "killed")
    ids["restarted"] = run_container("restarted", command=SLEEP)
    docker("restart", "-t", "0", "restarted")
    ids["burner"] = run_container(
        "burner", "--cpus", "0.5", command=["/bin/sh", "-c", "while :; do :; done"]
    )
    ids["holder"] = run_container(
        "holder",
        "--memory",
        "64m",
        command=["/bin/sh", "-c", "head -c 33554432 /dev/zero > /dev/shm/hold; sleep 100000"],
    )
    ids["healthy"] = run_container(
        "healthy", "--health-cmd", "true", "--health-interval", "1s", command=SLEEP
    )
    ids["unhealthy"] = run_container(
        "unhealthy",
        "--health-cmd",
        "false",
        "--health-interval",
        "1s",
        "--health-retries",
        "1",
        command=SLEEP,
    )
    ids["child_oom"] = run_container(
        "child_oom",
        "--memory",
        "24m",
        "--memory-swap",
        "24m",
        command=["/bin/sh", "-c", "tail /dev/zero; sleep 100000"],
    )
    wait_for(
        lambda: memory_events(cgroup_dir(driver, ids["child_oom"])).get("oom_kill", 0) > 0,
        120,
        "the child's OOM kill",
    )
    wait_for(
        lambda: health("healthy") == "healthy" and health("unhealthy") == "unhealthy",
        120,
        "the health checks",
    )
    exporter = start_exporter(out / f"exporter-{driver}.log")
    try:
        check_scrape(checks, driver, ids)
        check_stop(checks, out / f"exporter-{driver}.log")
    finally:
        exporter.terminate()
        exporter.wait(30)
    docker("rm", "-f", *ids.values(), check=False)
    return checks.rows


def check_scrape(checks: Checks, driver: str, ids: dict[str, str]) -> None:
    burner = cgroup_dir(driver, ids["burner"])
    holder = cgroup_dir(driver, ids["holder"])
    time.sleep(3)  # a few refreshes after the start
    cpu_before = cpu_usage_seconds(burner)
    mem_before = int((holder / "memory.current").read_text())
    time.sleep(2.5)  # at least one refresh falls after the reads above
    samples = scrape()
    cpu_after = cpu_usage_seconds(burner)
    mem_after = int((holder / "memory.current").read_text())
    for name, cid in ids.items():
        want = expected_id(driver, cid)
        got = value(samples, "container_last_seen", name=name)
        got_id = next(
            (
                lab.get("id")
                for lab, _ in samples.get("container_exit_code", [])
                if lab.get("name") == name
            ),
            None,
        )
        checks.add(f"id of {name}", got_id == want, got_id, want)
        del got
    cpu = value(samples, "container_cpu_usage_seconds_total", name="burner")
    checks.add(
        "burner cpu usage in cpu.stat bracket",
        cpu is not None and cpu_before <= cpu <= cpu_after,
        cpu,
        [cpu_before, cpu_after],
    )
    quota = value(samples, "container_spec_cpu_quota", name="burner")
    period = value(samples, "container_spec_cpu_period", name="burner")
    max_quota, max_period = (burner / "cpu.max").read_text().split()
    checks.add(
        "burner cpu quota/period = cpu.max",
        [quota, period] == [float(max_quota), float(max_period)],
        [quota, period],
        [max_quota, max_period],
    )
    memory = value(samples, "container_memory_usage_bytes", name="holder")
    low, high = min(mem_before, mem_after) - MIB, max(mem_before, mem_after) + MIB
    checks.add(
        "holder memory usage ~ memory.current",
        memory is not None and low <= memory <= high,
        memory,
        [mem_before, mem_after],
    )
    limit = value(samples, "container_spec_memory_limit_bytes", name="holder")
    want_limit = int((holder / "memory.max").read_text())
    checks.add("holder memory limit = memory.max", limit == want_limit, limit, want_limit)
    for name, code in (("exit3", 3), ("killed", 137), ("oom", 137), ("burner", 0)):
        got = value(samples, "container_exit_code", name=name)
        checks.add(f"exit code of {name}", got == code, got, code)
    for name, oom in (("oom", 1), ("exit3", 0), ("killed", 0)):
        got = value(samples, "container_oom_killed", name=name)
        checks.add(f"oom_killed of {name}", got == oom, got, oom)
    for name, status in (("healthy", "healthy"), ("unhealthy", "unhealthy")):
        got = value(samples, "container_health_status", name=name, status=status)
        checks.add(f"health of {name}", got == 1, got, 1)
    restarts = value(samples, "container_restarts_total", name="restarted")
    want_restarts = int(docker("inspect", "-f", "{{.RestartCount}}", "restarted"))
    checks.add(
        "restarts of restarted = RestartCount", restarts == want_restarts, restarts, want_restarts
    )
    lo = [
        lab
        for lab, _ in samples.get("container_network_receive_bytes_total", [])
        if lab.get("interface") == "lo"
    ]
    checks.add('no interface="lo"', not lo, len(lo), 0)
    stats_api = value(samples, "dockpulse_stats_api_containers")
    checks.add("dockpulse_stats_api_containers", stats_api == 0, stats_api, 0)
    events = memory_events(cgroup_dir(driver, ids["child_oom"]))
    got = value(samples, "container_oom_events_total", name="child_oom")
    checks.add(
        "container_oom_events_total of child_oom = memory.events oom_kill",
        got == events.get("oom_kill"),
        got,
        events.get("oom_kill"),
    )
    running = docker("inspect", "-f", "{{.State.Running}}", "child_oom")
    checks.add("child_oom still running", running == "true", running, "true")


def check_stop(checks: Checks, log: Path) -> None:
    """A stop under a running exporter is not a lost cgroup: no stats API call, no log."""
    docker("stop", "-t", "0", "healthy")
    time.sleep(3)  # a few refreshes
    samples = scrape()
    stats_api = value(samples, "dockpulse_stats_api_containers")
    checks.add("stats API containers after a stop", stats_api == 0, stats_api, 0)
    lost = [line for line in log.read_text().splitlines() if "cgroup not found" in line]
    checks.add('no "cgroup not found" logged after a stop', not lost, lost, [])
    state = value(samples, "container_exit_code", name="healthy")
    checks.add("exit code of healthy after docker stop -t 0", state == 137, state, 137)


def main() -> int:
    out = Path(sys.argv[1])
    started = time.monotonic()
    results: dict = {
        "guest_boot_seconds": float((out / "boot_seconds").read_text()),
        "kernel": sh("uname", "-r"),
        "cgroup_fs": sh("stat", "-fc", "%T", "/sys/fs/cgroup"),
        "checks": [],
        "errors": [],
    }
    for driver in ("systemd", "cgroupfs"):
        phase = time.monotonic()
        try:
            results["checks"] += scenario(driver, out)
        except Exception as error:  # recorded: the host test fails on any
            results["errors"].append(f"{driver}: {error!r}")
            print("ERROR", driver, repr(error), flush=True)
        results[f"{driver}_seconds"] = round(time.monotonic() - phase, 1)
    results["run_seconds"] = round(time.monotonic() - started, 1)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
