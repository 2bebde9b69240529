"""What the container's context ("why it went down") costs: in a critical mail, and in the
exporter that keeps the event rings.

1. Mail latency, webhook in -> mail in outbox: a real `dockpulse-exporter` on the test engine
   (DOCKPULSE_TEST_ENGINE_DIR) watches an exited container that logged 20 lines; two relays
   (outbox backend, Prometheus down for both: no graph, so only the context differs) get the
   same critical ContainerDown alert, interleaved, `--mails` times: one fetches the context
   from the exporter, the other's exporter refuses connections (the mail says why). Prints
   p50/p99 of both and of the difference.
2. The event rings at `--containers` containers (in process, no Docker): memory held with every
   ring full, and CPU per recorded event.

    .venv/bin/python -m bench.mail_context [--mails 40] [--containers 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

import requests

from bench.mail_chart import mail_latency, percentiles
from dockpulse_exporter.events import EventRings
from dockpulse_exporter.model import Container
from dockpulse_stack.engine import find_or_start_engine
from dockpulse_stack.rootfs import python_base_image
from testkit.helpers import free_port, wait_until
from testkit.local_stack import LocalStack, exporter_config
from testkit.mail import mail_text, parse

ENGINE_DIR = Path(os.environ.get("DOCKPULSE_TEST_ENGINE_DIR", "/tmp/dockpulse-test-engine"))
LOG_SCRIPT = (
    'for i in $(seq 1 19); do echo "request $i served in 12 ms"; done; '
    "echo 'FATAL: cannot open /data/db: permission denied' >&2; exit 1"
)


def down_alert(index: int, instance: str, name: str) -> bytes:
    labels = {
        "alertname": "ContainerDown",
        "severity": "critical",
        "instance": instance,
        "name": name,
        "bench": str(index),  # a new alert each time: no dedup, no cooldown
    }
    alert = {
        "status": "firing",
        "labels": labels,
        "annotations": {"summary": f"{name} is down"},
        "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=container_up+%3D%3D+0",
    }
    body = {"version": "4", "status": "firing", "receiver": "critical", "alerts": [alert]}
    return json.dumps(body).encode()


def mail_cost(mails: int) -> None:
    engine = find_or_start_engine(ENGINE_DIR)
    image = python_base_image(engine)
    name = f"bench-context-{uuid.uuid4().hex[:6]}"
    docker = ["docker", "run", "--detach", "--name", name, "--network=none", image]
    subprocess.run(
        [*docker, "sh", "-c", LOG_SCRIPT], env=engine.env(), check=True, capture_output=True
    )
    try:
        with tempfile.TemporaryDirectory() as work, LocalStack(Path(work)) as stack:
            exporter = stack.exporter(exporter_config(None), docker_host=engine.host)
            instance = f"127.0.0.1:{exporter.port}"
            url = f"http://{instance}/api/v1/containers/{name}/context"
            wait_until(lambda: requests.get(url, timeout=5).json().get("logs", {}).get("lines"))
            down = f"http://127.0.0.1:{free_port()}"
            settings = {"PROMETHEUS_URL": down, "ALERT_COOLDOWN": "1s", "CHART_BUDGET": "2s"}
            with_context = stack.relay("relay-context", **settings)
            refused = f"http://127.0.0.1:{free_port()}/{{instance}}"
            without = stack.relay("relay-refused", EXPORTER_URL=refused, **settings)
            timed: dict[str, list[float]] = {"with": [], "without": []}
            for index in range(-1, mails):  # -1: warm-up
                for key, relay in (("with", with_context), ("without", without)):
                    body = down_alert(index, instance, name)
                    seconds, mail = mail_latency(relay, stack.token, index, body)
                    text = mail_text(parse(mail))
                    if key == "with" and "permission denied" not in text:
                        raise SystemExit(f"mail {index} has no log lines: see {relay.log}")
                    if index >= 0:
                        timed[key].append(seconds)
    finally:
        subprocess.run(["docker", "rm", "-f", name], env=engine.env(), capture_output=True)
    added = [a - b for a, b in zip(timed["with"], timed["without"], strict=True)]
    print(f"critical ContainerDown mail, webhook in -> mail in outbox, {mails} mails each")
    print(f"  exporter refusing (no context)  {percentiles(timed['without'])}")
    print(f"  with the context                {percentiles(timed['with'])}")
    print(f"  added by the context            {percentiles(added)}")


def _container(index: int) -> Container:
    return Container(
        f"{index:064x}", f"app-{index}", "app:1", {}, "running", 1, 0, False, 0, "healthy",
        0.0, "host", "", 0, 0, 0, image_id=f"sha256:{index:064x}",
    )  # fmt: skip


def ring_cost(containers: int, per_container: int = 20) -> None:
    rings = EventRings(per_container=per_container)
    fleet = [
        Container(
            f"{index:064x}",
            f"app-{index}",
            "app:1",
            {},
            "running",
            1,
            0,
            False,
            0,
            "healthy",
            0.0,
            "host",
            "",
            0,
            0,
            0,
            image_id=f"sha256:{index:064x}",
        )
        for index in range(containers)
    ]
    actions = ["die", "start", "health_status: unhealthy", "kill", "restart"]

    def event(index: int, step: int) -> dict[str, object]:
        container = fleet[index]
        return {
            "Action": actions[step % len(actions)],
            "id": container.id,
            "timeNano": time.time_ns(),
            "Actor": {
                "ID": container.id,
                "Attributes": {"name": container.name, "exitCode": "1", "signal": "9"},
            },
        }

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for step in range(per_container):
        for index, container in enumerate(fleet):
            rings.record(event(index, step), container, 1 << 20)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    events = [event(index % containers, step) for step in range(5) for index in range(containers)]
    started = time.process_time()
    for _ in range(10):
        for item in events:
            rings.record(item, fleet[int(str(item["id"]), 16) % containers])
    cpu = (time.process_time() - started) / (10 * len(events))
    print(f"event rings, {containers} containers x {per_container} events (all full)")
    each = held / containers / 1024
    print(f"  memory held       {held / (1 << 20):.1f} MiB ({each:.1f} KiB a container)")
    print(
        f"  CPU per event     {cpu * 1e6:.1f} µs (recording only; the watcher's inspect is apart)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=40)
    parser.add_argument("--containers", type=int, default=1000)
    parser.add_argument("--rings-only", action="store_true", help="skip the mail latency part")
    args = parser.parse_args()
    ring_cost(args.containers)
    if not args.rings_only:
        mail_cost(args.mails)


if __name__ == "__main__":
    main()
