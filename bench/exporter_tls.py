"""The cost of TLS and basic auth on a scrape: the exporter at N containers, plain HTTP against
`--web.config.file` (TLS 1.3, one bcrypt user), side by side in one run.

Three exporter processes watch the same N idle containers (busybox `sleep`, `--network none`)
on a private dockerd; a Prometheus-like client scrapes them in turn with gzip, `--scrapes` times
each: `plain` (HTTP, one kept-alive connection), `tls` (TLS + basic auth on one kept-alive
connection, as Prometheus scrapes the HTTP/1.1 exporter) and `tls_reconnect` (TLS + basic auth,
`Connection: close`: a handshake every scrape, what an HTTP/1.0 exporter cost). The basic-auth
check is the cached one after the first. Printed: p50/p99 of each and each exporter's CPU per
scrape; the last line is the summary.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import requests
import yaml

from bench.exporter import (
    gzip_scrape,
    idle_containers,
    percentile,
    process_cpu_seconds,
)
from testkit.local_stack import LocalStack
from testkit.passwords import bcrypt_hash
from testkit.tls import make_certificates

STATE_DIR = Path("/tmp/dockpulse-bench-tls-engine")
USER, PASSWORD = "prometheus", "a-bench-password"


def web_config(folder: Path) -> tuple[Path, Path]:
    """A web config with TLS and one user (bcrypt cost 10, htpasswd's default); and the CA."""
    certificates = make_certificates(folder / "certificates")
    hashed = bcrypt_hash(PASSWORD, cost=10)
    path = folder / "web.yml"
    tls = {"cert_file": str(certificates.server_cert), "key_file": str(certificates.server_key)}
    path.write_text(yaml.safe_dump({"tls_server_config": tls, "basic_auth_users": {USER: hashed}}))
    return path, certificates.ca


def wait_for_containers(session: requests.Session, url: str, count: int) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if session.get(url, timeout=10).text.count("container_cpu_usage_seconds_total{") >= count:
            return
        time.sleep(0.5)
    raise SystemExit(f"{url} did not show {count} containers within 180 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=200)
    parser.add_argument("--scrapes", type=int, default=300, help="of each exporter")
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR, help="private dockerd's")
    args = parser.parse_args()

    with idle_containers(args.state_dir, args.containers) as (engine, _):
        with tempfile.TemporaryDirectory() as work_dir, LocalStack(Path(work_dir)) as stack:
            config_path, ca = web_config(Path(work_dir))
            settings = {"refresh_interval": "5s", "probes": []}
            plain = stack.exporter(settings, "plain", docker_host=engine.host)
            secured = stack.exporter(
                settings,
                "tls",
                docker_host=engine.host,
                web_config=config_path,
                scheme="https",
                request_options={"verify": str(ca), "auth": (USER, PASSWORD)},
            )
            reconnecting = stack.exporter(
                settings,
                "tls-reconnect",
                docker_host=engine.host,
                web_config=config_path,
                scheme="https",
                request_options={"verify": str(ca), "auth": (USER, PASSWORD)},
            )
            exporters = {"plain": plain, "tls": secured, "tls_reconnect": reconnecting}
            sessions = {name: requests.Session() for name in exporters}
            for name, session in sessions.items():
                session.trust_env = False  # REQUESTS_CA_BUNDLE would override `verify`
                if name != "plain":
                    session.verify, session.auth = str(ca), (USER, PASSWORD)
            sessions["tls_reconnect"].headers["Connection"] = "close"
            urls = {name: f"{exporter.url}/metrics" for name, exporter in exporters.items()}
            pids = {name: exporter.process.pid for name, exporter in exporters.items()}
            for name in urls:
                wait_for_containers(sessions[name], urls[name], args.containers)
            time.sleep(6)  # past start-up and at least one steady refresh
            latencies: dict[str, list[float]] = {name: [] for name in exporters}
            cpu = {name: process_cpu_seconds(pid) for name, pid in pids.items()}
            for _ in range(args.scrapes):
                for name in exporters:
                    latencies[name].append(gzip_scrape(sessions[name], urls[name]))
                time.sleep(0.02)
            cpu = {name: process_cpu_seconds(pid) - cpu[name] for name, pid in pids.items()}
        figures = {
            name: {
                "p50_ms": 1000 * percentile(values, 0.5),
                "p99_ms": 1000 * percentile(values, 0.99),
                "cpu_ms_per_scrape": 1000 * cpu[name] / args.scrapes,
            }
            for name, values in latencies.items()
        }
        for name, figure in figures.items():
            print(
                f"{name:>13}: p50 {figure['p50_ms']:.1f} ms, p99 {figure['p99_ms']:.1f} ms, "
                f"exporter CPU {figure['cpu_ms_per_scrape']:.1f} ms/scrape ({args.scrapes} scrapes)"
            )
        print(
            f"containers={args.containers} scrapes={args.scrapes} "
            + " ".join(
                f"{name}_{key}={value:.1f}"
                for name, figure in figures.items()
                for key, value in figure.items()
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
