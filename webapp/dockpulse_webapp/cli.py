"""`dockpulse-webapp`: flags and start-up only; gunicorn serves the app.

gunicorn runs `workers` processes with `threads` threads each (gthread). Before forking, the
master makes a run directory for the shared stress slots and the multiprocess metrics.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from dockpulse.service import service_parser, setup_logging
from dockpulse.settings import ConfigError, exit_with_config_error, split_listen_address
from dockpulse_webapp.config import DEFAULT_LISTEN_ADDRESS, WebappConfig, load_config

PROGRAM = "dockpulse-webapp"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = service_parser(
        PROGRAM,
        "The dockpulse demo app (Flask + PostgreSQL) under gunicorn. "
        "The database comes from DATABASE_URL.",
        DEFAULT_LISTEN_ADDRESS,
    )
    parser.add_argument("--workers", help="gunicorn worker processes (2)")
    parser.add_argument("--threads", help="threads per worker (8)")
    return parser.parse_args(argv)


class WebappServer(BaseApplication):
    """gunicorn, configured from code rather than its own command line."""

    def __init__(self, config: WebappConfig, run_dir: Path, log_level: str) -> None:
        self.webapp_config = config
        self.run_dir = run_dir
        self.log_level = log_level
        super().__init__()

    def load_config(self) -> None:
        config = self.webapp_config
        host, port = split_listen_address(config.listen_address)
        options: dict[str, Any] = {
            "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
            "workers": config.workers,
            "worker_class": "gthread",
            "threads": config.threads,
            "timeout": int(config.longest_request_seconds()) + 30,
            "graceful_timeout": 10,
            # Longer than clients' pauses, so an idle connection is not closed just as a
            # client reuses it (which they see as "closed without response").
            "keepalive": 75,
            "proc_name": PROGRAM,
            "errorlog": "-",
            "loglevel": self.log_level,
            "child_exit": _forget_worker_metrics,
            "control_socket_disable": True,  # gunicorn >= 24; one fixed path would clash
        }
        for key, value in options.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self) -> Any:
        from dockpulse_webapp.app import create_app
        from dockpulse_webapp.slots import StressSlots

        slots = StressSlots(self.run_dir / "slots", self.webapp_config.max_concurrent_stress)
        return create_app(self.webapp_config, stress_slots=slots)


def _forget_worker_metrics(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def _check_can_listen(address: str) -> None:
    """Fail fast with one line when the address is taken (gunicorn would retry for 5 s)."""
    host, port = split_listen_address(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    flags = {
        "listen_address": args.listen_address,
        "workers": args.workers,
        "threads": args.threads,
    }
    try:
        config = load_config(args.config_file, flags)
    except ConfigError as exc:
        exit_with_config_error(PROGRAM, exc)
    try:
        _check_can_listen(config.listen_address)
    except OSError as exc:
        print(f"{PROGRAM}: cannot listen on {config.listen_address}: {exc}", file=sys.stderr)
        return 1
    run_dir = Path(tempfile.mkdtemp(prefix=f"{PROGRAM}-"))
    metrics_dir = run_dir / "metrics"
    metrics_dir.mkdir()
    # Must be set before prometheus_client is imported: the workers share one metrics view.
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    try:
        WebappServer(config, run_dir, args.log_level).run()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
