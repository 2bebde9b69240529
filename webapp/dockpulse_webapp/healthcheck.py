"""The container HEALTHCHECK: exit 0 when the app's /health answers 200, else 1.

The port is the one the app serves on: its `--web.listen-address` flag (read from PID 1's
command line, the app in its container), else WEBAPP_LISTEN_ADDRESS, else the default.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from dockpulse.settings import ConfigError, split_listen_address
from dockpulse_webapp.config import DEFAULT_LISTEN_ADDRESS

FLAG = "--web.listen-address"


def listen_address(cmdline: list[str], environ: dict[str, str]) -> str:
    for number, arg in enumerate(cmdline):
        if arg.startswith(FLAG + "="):
            return arg.split("=", 1)[1]
        if arg == FLAG and number + 1 < len(cmdline):
            return cmdline[number + 1]
    return environ.get("WEBAPP_LISTEN_ADDRESS") or DEFAULT_LISTEN_ADDRESS


def health_url(address: str) -> str:
    host, port = split_listen_address(address)
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}/health" if ":" in host else f"http://{host}:{port}/health"


def main() -> int:
    try:
        cmdline = Path("/proc/1/cmdline").read_bytes().decode().split("\0")
    except OSError:
        cmdline = []
    try:
        url = health_url(listen_address(cmdline, dict(os.environ)))
        with urllib.request.urlopen(url, timeout=3) as response:
            return 0 if response.status == 200 else 1
    except (ConfigError, urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
