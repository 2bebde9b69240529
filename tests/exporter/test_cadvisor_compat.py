"""cAdvisor users switch without editing a dashboard: the community's own queries return data.

The queries come from 11 dashboards and 6 rule files written for cAdvisor by other people
(`../shared/compat`, read in place, never copied). A real Prometheus scrapes the real exporter,
which watches a few containers: `--network none` ones, one with a veth pair moved into its
network namespace (no bridge needed), one with memory and CPU limits, and some with the
Docker labels that dockprom and swarmprom select on. Alert expressions are judged without
their final threshold comparison (the question is whether the series exist, not whether the
alert fires). Goal: >= 95 % of the 79 unflagged queries return data, and every flagged
root-cgroup / docker-label / cgroupv1-cgroupfs-id query that can work on a plain Docker host.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, closing, suppress
from dataclasses import dataclass

import docker
import pytest
import requests

from dockpulse_stack.engine import Engine
from testkit.cadvisor_queries import (
    GOAL_SHARE,
    QUERIES,
    SWARM_LABELS,
    Query,
    judge,
)
from testkit.helpers import wait_until
from testkit.local_stack import LocalStack


def test_threshold_stripping() -> None:
    strip = Query("x-rules", frozenset(), "").__class__
    assert strip("a-rules", frozenset(), "time() - container_last_seen > 60").judged == (
        "time() - container_last_seen"
    )
    both = "(1 - a / b) * 100 > 80 and sum(c) BY (instance) > 0"
    assert (
        strip("awesome-alerts", frozenset(), both).judged
        == "(1 - a / b) * 100 and sum(c) BY (instance)"
    )
    kept = "sum(container_spec_memory_limit_bytes > 0) BY (name)"
    assert strip("a-rules", frozenset(), kept).judged == kept


@dataclass
class CompatStack:
    prometheus_url: str
    containers: list[str]


def add_veth(pid: int, suffix: str) -> None:
    """A veth pair with one end in the container's network namespace (no bridge)."""
    host_end, container_end = f"dpv{suffix}", f"dpc{suffix}"
    run = ["ip", "link"]
    subprocess.run(
        [*run, "add", host_end, "type", "veth", "peer", "name", container_end], check=True
    )
    subprocess.run([*run, "set", container_end, "netns", str(pid)], check=True)
    subprocess.run([*run, "set", host_end, "up"], check=True)
    subprocess.run(
        ["nsenter", "-t", str(pid), "-n", "ip", "link", "set", container_end, "up"], check=True
    )


@pytest.fixture(scope="module")
def compat_stack(engine: Engine, busybox: str, tmp_path_factory) -> Iterator[CompatStack]:
    assert QUERIES.exists(), f"the community queries are missing: {QUERIES}"
    work_dir = tmp_path_factory.mktemp("compat")
    suffix = uuid.uuid4().hex[:6]
    prefix = f"compat-{suffix}"
    with ExitStack() as stack, closing(engine.client()) as client:

        def run(name: str, **options) -> docker.models.containers.Container:
            stack.callback(_remove, client, f"{prefix}-{name}")
            return client.containers.run(
                busybox,
                ["sh", "-c", options.pop("command", "sleep 600")],
                name=f"{prefix}-{name}",
                detach=True,
                network_mode="none",
                **options,
            )

        run("plain")
        run(
            "limited",
            mem_limit="64m",
            mem_reservation="32m",
            nano_cpus=500_000_000,
            command="while :; do :; done",
        )
        run("monitoring", labels={"org.label-schema.group": "monitoring"})
        run("swarm", labels=SWARM_LABELS, command="head -c 2000000 /dev/zero > /tmp/f; sleep 600")
        veth = run("veth")
        veth.reload()
        add_veth(veth.attrs["State"]["Pid"], suffix)
        local = stack.enter_context(LocalStack(work_dir))
        exporter = local.exporter(
            {"refresh_interval": "1s", "filesystem_interval": "1s"}, docker_host=engine.host
        )
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                {
                    "job_name": "dockpulse",
                    "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}],
                    # The shared engine runs other tests' containers: keep ours and the host.
                    "metric_relabel_configs": [
                        {"source_labels": ["name"], "regex": f"|{prefix}-.*", "action": "keep"}
                    ],
                }
            ],
        }
        prometheus = local.prometheus(config)
        url = prometheus.url

        def enough_history() -> bool:
            # rate()/irate() need two samples of each series, and the slow filesystem pass.
            result = instant(url, "min(count_over_time(container_last_seen[1m]))")
            fs = instant(url, "count(container_fs_usage_bytes)")
            return bool(result and float(result[0]["value"][1]) >= 4 and fs)

        wait_until(enough_history, timeout=60, interval=0.5)
        yield CompatStack(url, [f"{prefix}-{n}" for n in ("plain", "limited", "veth")])


def _remove(client: docker.DockerClient, name: str) -> None:
    with suppress(docker.errors.NotFound):
        client.containers.get(name).remove(force=True)


def instant(url: str, expr: str) -> list:
    reply = requests.post(f"{url}/api/v1/query", data={"query": expr}, timeout=10).json()
    assert reply["status"] == "success", f"{expr}: {reply}"
    data = reply["data"]
    if data["resultType"] == "scalar":
        return [] if data["result"][1] in ("NaN", "+Inf", "-Inf") else [data["result"]]
    return data["result"]


def test_community_cadvisor_queries_return_data(compat_stack: CompatStack) -> None:
    verdict = judge(lambda expr: bool(instant(compat_stack.prometheus_url, expr)))
    assert verdict.unflagged == 79
    print("\n" + verdict.report())
    assert verdict.share >= GOAL_SHARE, [q.judged for q in verdict.missing]
    assert not verdict.required_missing, [q.judged for q in verdict.required_missing]


def test_veth_interface_is_reported(compat_stack: CompatStack) -> None:
    veth_container = compat_stack.containers[2]
    result = instant(
        compat_stack.prometheus_url,
        f'container_network_receive_bytes_total{{name="{veth_container}"}}',
    )
    interfaces = {series["metric"]["interface"] for series in result}
    assert any(name.startswith("dpc") for name in interfaces), interfaces
