"""Sustained Alertmanager webhook posts against the durable relay, on loopback.

Starts `dockpulse-relay` (outbox backend, short digest window) once per store setting, side by
side: `normal` (WAL, no fsync per commit: survives kill -9; the default) and `full` (fsync per
commit: survives power loss too). Several client processes post over keep-alive connections for
`--duration` seconds: every post a new alert (one in ten critical), and one post in ten a
re-delivery of an earlier one, as Alertmanager does. Afterwards every acknowledged alert must be
in exactly one mail in the outbox: `lost` and `duplicated` count the exceptions.

    .venv/bin/python bench/relay.py [--duration 10] [--clients 4]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import requests

from testkit.helpers import free_port
from testkit.mail import parse

RELAY = Path(sys.executable).with_name("dockpulse-relay")
TOKEN = "bench-token"
FINGERPRINT_LINE = re.compile(r"^Fingerprint:\s+(\S+)", re.MULTILINE)


def notification(client: int, seq: int) -> bytes:
    severity = "critical" if seq % 10 == 0 else "warning"
    alert = {
        "status": "firing",
        "labels": {
            "alertname": "ContainerDown" if severity == "critical" else "HighCpu",
            "severity": severity,
            "name": f"bench-{client}-{seq % 50}",
        },
        "annotations": {"summary": "bench alert", "description": f"value {seq}"},
        "startsAt": "2024-05-01T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
        "fingerprint": f"c{client}s{seq}",
    }
    payload = {
        "version": "4",
        "groupKey": f"{{}}:{{alertname={alert['labels']['alertname']!r}}}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "relay",
        "groupLabels": {},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager:9093",
        "alerts": [alert],
    }
    return json.dumps(payload).encode()


def client(index: int, port: int, deadline: float, results: multiprocessing.Queue) -> None:
    """Post until `deadline`; report latencies, acknowledged fingerprints and errors."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.connect()
    connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    latencies: list[float] = []
    acknowledged: list[str] = []
    errors = 0
    seq = 0
    while time.monotonic() < deadline:
        resend = seq > 10 and seq % 10 == 5
        number = seq - 7 if resend else seq
        body = notification(index, number)
        started = time.perf_counter()
        connection.request("POST", "/webhook", body, headers)
        response = connection.getresponse()
        response.read()
        latencies.append(time.perf_counter() - started)
        if response.status == 200:
            acknowledged.append(f"c{index}s{number}")
        else:
            errors += 1
        seq += 1
    results.put((latencies, acknowledged, errors))


def start_relay(folder: Path, port: int, sync: str) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        RELAY_AUTH_TOKEN=TOKEN,
        RELAY_STORE=str(folder / "relay.db"),
        RELAY_STORE_SYNC=sync,
        OUTBOX_DIR=str(folder / "outbox"),
        ALERT_LOG=str(folder / "alerts.log"),
        MAIL_BACKEND="outbox",
        BUFFER_TIMEOUT="2",
        CHECK_INTERVAL="0.5",
        ALERT_COOLDOWN="1",
    )
    relay = subprocess.Popen(
        [str(RELAY), f"--web.listen-address=127.0.0.1:{port}", "--log.level=warning"],
        env=env,
        cwd=folder,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                return relay
        except requests.ConnectionError:
            time.sleep(0.1)
    relay.kill()
    raise SystemExit("relay did not start")


def queue_empty(port: int) -> bool:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    depths = re.findall(r"^dockpulse_relay_queue_depth\{[^}]*\} (\S+)$", text, re.MULTILINE)
    return bool(depths) and all(float(depth) == 0 for depth in depths)


def fingerprints(eml: Path) -> list[str]:
    """The alert fingerprints listed in a mail's text part."""
    message = parse(eml.read_bytes())
    text = message.get_body(preferencelist=("plain",)).get_content()
    return FINGERPRINT_LINE.findall(text)


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def run(sync: str, duration: float, clients: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        folder = Path(tmp)
        port = free_port()
        relay = start_relay(folder, port, sync)
        try:
            results: multiprocessing.Queue = multiprocessing.Queue()
            deadline = time.monotonic() + duration
            workers = [
                multiprocessing.Process(target=client, args=(i, port, deadline, results))
                for i in range(clients)
            ]
            started = time.monotonic()
            for worker in workers:
                worker.start()
            outcomes = [results.get(timeout=duration + 60) for _ in workers]
            elapsed = time.monotonic() - started
            for worker in workers:
                worker.join()
            drain_deadline = time.monotonic() + 60
            while not queue_empty(port) and time.monotonic() < drain_deadline:
                time.sleep(0.2)
        finally:
            relay.send_signal(signal.SIGTERM)
            relay.wait(timeout=10)
        latencies = sorted(value for outcome in outcomes for value in outcome[0])
        acknowledged = {fingerprint for outcome in outcomes for fingerprint in outcome[1]}
        mailed: Counter[str] = Counter()
        for mail in (folder / "outbox").glob("*.eml"):
            mailed.update(fingerprints(mail))
        return {
            "posts": len(latencies),
            "rate": len(latencies) / elapsed,
            "p50": percentile(latencies, 0.50) * 1000,
            "p99": percentile(latencies, 0.99) * 1000,
            "max": latencies[-1] * 1000,
            "errors": sum(outcome[2] for outcome in outcomes),
            "lost": sum(1 for fingerprint in acknowledged if mailed[fingerprint] == 0),
            "duplicated": sum(1 for count in mailed.values() if count > 1),
            "mails": sum(1 for _ in (folder / "outbox").glob("*.eml")),
        }


def describe(sync: str, result: dict[str, float]) -> str:
    return (
        f"{sync}: {result['rate']:.0f} posts/s, p50 {result['p50']:.1f} ms, "
        f"p99 {result['p99']:.1f} ms, lost={result['lost']}, duplicated={result['duplicated']}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per store setting")
    parser.add_argument("--clients", type=int, default=4, help="concurrent keep-alive clients")
    parser.add_argument("--store-sync", default="normal,full", help="settings to compare")
    args = parser.parse_args()
    summaries = []
    for sync in args.store_sync.split(","):
        result = run(sync, args.duration, args.clients)
        print(
            f"store_sync={sync}: {result['posts']} posts in {args.duration:.0f}s by "
            f"{args.clients} clients, {result['rate']:.0f} posts/s, p50 {result['p50']:.2f} ms, "
            f"p99 {result['p99']:.2f} ms, max {result['max']:.1f} ms, errors {result['errors']}, "
            f"{result['mails']} mails, lost {result['lost']}, duplicated {result['duplicated']}",
            flush=True,
        )
        summaries.append(describe(sync, result))
    print("relay bench: " + " | ".join(summaries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
