"""Socket-proxy benchmark: what reading Docker through the exporter's haproxy costs at N containers.

On a private dockerd with N idle containers (busybox `sleep`, `--network none`), side by side in
one run, direct (Docker's socket) and proxied (Debian's haproxy with
exporter/socket-proxy/haproxy.cfg, the exporter's own path in `make demo`), alternating (ABBA) so
that load on this shared machine falls on both alike:
- a full resync, the exporter's own `DockerWatcher.resync(full=True)`: /info, /containers/json and
  one inspect per container, p50/p99 of `--resyncs`;
- one container's inspect (`/containers/{id}/json`, what each event costs), p50/p99 over every
  container, `--rounds` times;
and the median of the paired differences (each pair ran back to back), steadier under load.
The last line is the summary.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import docker

from bench.exporter import BENCH_LABEL, idle_containers, percentile
from dockpulse_exporter.docker_watch import DockerWatcher
from dockpulse_stack.demo import socket_path
from testkit.socket_proxy import socket_proxy

STATE_DIR = Path("/tmp/dockpulse-proxy-bench-engine")


def timed(call: Callable[..., object], *args: object, **kwargs: object) -> float:
    """Milliseconds `call(*args, **kwargs)` takes."""
    started = time.perf_counter()
    call(*args, **kwargs)
    return 1000 * (time.perf_counter() - started)


def side_by_side(
    clients: dict[str, docker.APIClient], container_ids: list[str], resyncs: int, rounds: int
) -> dict[str, dict[str, list[float]]]:
    """Milliseconds of each full resync and each inspect, by path (direct, proxied)."""
    watchers = {path: DockerWatcher("unused", 60.0, on_change=lambda: None) for path in clients}
    times: dict[str, dict[str, list[float]]] = {
        path: {"resync": [], "inspect": []} for path in clients
    }
    for path, client in clients.items():  # warm-up: connections, version negotiation
        watchers[path].resync(client, full=True)

    def in_turn(turn: int) -> list[tuple[str, docker.APIClient]]:
        """Both paths, first one then the other first (ABBA), so neither always goes second."""
        pairs = list(clients.items())
        return pairs if turn % 2 == 0 else pairs[::-1]

    for turn in range(resyncs):
        for path, client in in_turn(turn):
            times[path]["resync"].append(timed(watchers[path].resync, client, full=True))
    for turn in range(rounds * len(container_ids)):
        container_id = container_ids[turn % len(container_ids)]
        for path, client in in_turn(turn):
            times[path]["inspect"].append(timed(client.inspect_container, container_id))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=200)
    parser.add_argument("--resyncs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3, help="inspects of every container")
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR, help="private dockerd's")
    args = parser.parse_args()

    with idle_containers(args.state_dir, args.containers) as (engine, run_id):
        with (
            tempfile.TemporaryDirectory(prefix="dp-proxy-") as folder,
            socket_proxy(socket_path(engine.host), Path(folder)) as proxy,
            closing(docker.APIClient(base_url=engine.host, timeout=60)) as direct,
            closing(docker.APIClient(base_url=f"unix://{proxy}", timeout=60)) as proxied,
        ):
            ids = [c["Id"] for c in direct.containers(filters={"label": f"{BENCH_LABEL}={run_id}"})]
            times = side_by_side(
                {"direct": direct, "proxied": proxied}, ids, args.resyncs, args.rounds
            )
        figures = {
            f"{path}_{kind}_{name}_ms": percentile(samples, share)
            for path, kinds in times.items()
            for kind, samples in kinds.items()
            for name, share in (("p50", 0.5), ("p99", 0.99))
        }
        print(f"\n{'':<22}{'direct':>12}{'proxied':>12}{'cost':>10}")
        for kind, count in (("resync", args.resyncs), ("inspect", args.rounds * len(ids))):
            for name in ("p50", "p99"):
                direct_ms = figures[f"direct_{kind}_{name}_ms"]
                proxied_ms = figures[f"proxied_{kind}_{name}_ms"]
                label = f"{'full resync' if kind == 'resync' else 'inspect'} {name} (n={count})"
                print(
                    f"{label:<22}{direct_ms:>10.2f}ms{proxied_ms:>10.2f}ms"
                    f"{proxied_ms - direct_ms:>+8.2f}ms"
                )
        for kind in ("resync", "inspect"):  # each pair ran back to back: the steadier figure
            pairs = zip(times["direct"][kind], times["proxied"][kind], strict=True)
            paired = [proxied - direct for direct, proxied in pairs]
            figures[f"paired_{kind}_cost_p50_ms"] = percentile(paired, 0.5)
        print(
            f"paired cost p50 (proxied - direct, back to back): full resync "
            f"{figures['paired_resync_cost_p50_ms']:+.2f}ms, inspect "
            f"{figures['paired_inspect_cost_p50_ms']:+.2f}ms"
        )
        summary = " ".join(f"{key}={value:.2f}" for key, value in figures.items())
        print(f"\ncontainers={len(ids)} {summary}", flush=True)


if __name__ == "__main__":
    main()
