"""What every dockpulse service's start-up shares: the common flags, logging, signals."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

LOG_LEVELS = ("debug", "info", "warning", "error")


def service_parser(prog: str, description: str, default_listen: str) -> argparse.ArgumentParser:
    """An argument parser with the exporters' conventional flags."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config.file", dest="config_file", help="YAML configuration file")
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        help=f"HOST:PORT to listen on (default {default_listen})",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        help="TLS and basic auth, in exporter-toolkit's format (default: plain HTTP, no auth)",
    )
    parser.add_argument("--log.level", dest="log_level", default="info", choices=LOG_LEVELS)
    return parser


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def stop_on_signals(stop: Callable[[], None]) -> None:
    """Run `stop` (off the signal handler) on SIGTERM and SIGINT."""

    def handler(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=stop, daemon=True).start()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
