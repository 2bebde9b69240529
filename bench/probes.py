"""Probe run cost: a new connection every run (today's prober) against the old keep-alive
`requests.Session` per probe, on the same local targets (HTTP and HTTPS, keep-alive servers in
a separate process so the client's CPU is the prober's alone).

Per mode: p50/p99 of one run's duration over `--runs` runs, and the prober's CPU per 100 runs.
The last line is the summary.
"""

from __future__ import annotations

import argparse
import multiprocessing
import ssl
import statistics
import tempfile
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
import urllib3

from dockpulse_exporter.config import Probe
from dockpulse_exporter.probes import probe_once
from testkit.certificates import self_signed
from testkit.helpers import free_port, wait_until


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = -1  # headers and body in one write: no Nagle/delayed-ACK stall on keep-alive
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        return


def serve(port: int, cert: tuple[Path, Path] | None) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    if cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*cert)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


def measure(run_once: Callable[[], bool], runs: int) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, CPU ms per 100 runs) of `run_once`, which must succeed."""
    run_once()  # warm up (the keep-alive mode opens its connection here)
    durations = []
    cpu_started = time.process_time()
    for _ in range(runs):
        started = time.perf_counter()
        assert run_once()
        durations.append(time.perf_counter() - started)
    cpu = time.process_time() - cpu_started
    p99 = statistics.quantiles(durations, n=100)[98]
    return statistics.median(durations) * 1e3, p99 * 1e3, cpu / runs * 100 * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    with tempfile.TemporaryDirectory() as tmp:
        cert = self_signed(Path(tmp))
        ports = {"http": free_port(), "https": free_port()}
        servers = [
            multiprocessing.Process(target=serve, args=(ports["http"], None), daemon=True),
            multiprocessing.Process(target=serve, args=(ports["https"], cert), daemon=True),
        ]
        for server in servers:
            server.start()
        summary = []
        try:
            for scheme, port in ports.items():
                url = f"{scheme}://127.0.0.1:{port}/health"
                wait_until(lambda url=url: requests.get(url, verify=False, timeout=1).ok)
                probe = Probe(name="b", url=url, insecure_skip_verify=scheme == "https")
                session = requests.Session()
                modes = {
                    "fresh connection (now)": lambda probe=probe: probe_once(probe).success,
                    "keep-alive Session (before)": lambda url=url, session=session: (
                        session.get(url, timeout=2, verify=False).status_code == 200
                    ),
                }
                for mode, run_once in modes.items():
                    p50, p99, cpu = measure(run_once, args.runs)
                    print(
                        f"{scheme:5} {mode:28} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  "
                        f"CPU {cpu:6.1f} ms per 100 runs"
                    )
                    summary.append(f"{scheme} {mode.split()[0]} p50 {p50:.2f} ms cpu {cpu:.0f} ms")
        finally:
            for server in servers:
                server.terminate()
                server.join(5)
    print(f"SUMMARY ({args.runs} runs each): " + "; ".join(summary))


if __name__ == "__main__":
    main()
