"""Alertmanager failover: how long a new alert takes to be notified when the peer that would
notify it has just been killed, side by side with both peers up.

Each round starts two real Alertmanager peers on loopback with the SHIPPED alertmanager.yml and
flags (peer timeout 15 s), one Prometheus sending to both (scrape and evaluation every second, so
that Prometheus adds little of its own), and a local webhook receiver. Then:

- both up: an alert fires -> time to its first notification, and how many notifications it got;
- one killed: the peer that notified is killed (kill -9) and a new alert fires at once -> time
  to its notification by the other peer (which waits out the peer timeout while the dead peer is
  still a member), and how many.

    .venv/bin/python -m bench.alertmanager_failover [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import requests

from testkit.helpers import wait_until
from testkit.local_stack import LocalStack
from testkit.switchboard import (
    Switchboard,
    alertmanager_cluster,
    switch_prometheus,
    switchboard,
)

SETTLE_SECONDS = 20.0  # later notifications of an alert (duplicates) arrive within this


def notified_after(board: Switchboard, case: str, since: float, timeout: float = 90) -> float:
    (first, *_) = wait_until(lambda: board.firing(case), timeout=timeout, interval=0.05)
    return first.received_at - since


def active_alertmanagers(prometheus_url: str) -> list[dict[str, str]]:
    """The Alertmanagers Prometheus has discovered and sends to (a few seconds after start)."""
    answer = requests.get(f"{prometheus_url}/api/v1/alertmanagers", timeout=5).json()
    return answer["data"]["activeAlertmanagers"]


def one_round(number: int, work_dir: Path) -> tuple[float, int, float, int]:
    work_dir.mkdir(parents=True)
    with switchboard() as board, LocalStack(work_dir) as stack:
        peers = alertmanager_cluster(stack, board.url)
        prometheus = switch_prometheus(stack, board, peers)
        wait_until(lambda: len(active_alertmanagers(prometheus.url)) == 2, timeout=30)

        up_case, down_case = f"up-{number}", f"down-{number}"
        switched = time.monotonic()
        board.switch_on(up_case)
        up_latency = notified_after(board, up_case, switched)
        sender = board.firing(up_case)[0].sender.rstrip("/")
        time.sleep(SETTLE_SECONDS)
        up_count = len(board.firing(up_case))

        notifier = next(peer for peer in peers if sender.endswith(f":{peer.port}"))
        notifier.process.kill()
        notifier.process.wait()
        switched = time.monotonic()
        board.switch_on(down_case)
        down_latency = notified_after(board, down_case, switched)
        time.sleep(SETTLE_SECONDS)
        down_count = len(board.firing(down_case))
    return up_latency, up_count, down_latency, down_count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="dp-am-failover-") as folder:
        for number in range(args.rounds):
            result = one_round(number, Path(folder) / f"round-{number}")
            results.append(result)
            print(
                f"round {number + 1}: both up {result[0]:.1f} s ({result[1]} notification(s)), "
                f"notifier killed {result[2]:.1f} s ({result[3]} notification(s))",
                flush=True,
            )
    up = [r[0] for r in results]
    down = [r[2] for r in results]
    print(
        f"alert -> notification, both peers up: median {statistics.median(up):.1f} s, "
        f"max {max(up):.1f} s; notifier just killed: median {statistics.median(down):.1f} s, "
        f"max {max(down):.1f} s (shipped --cluster.peer-timeout 15 s, {args.rounds} rounds); "
        f"notifications per alert: {sorted({r[1] for r in results} | {r[3] for r in results})}"
    )


if __name__ == "__main__":
    main()
