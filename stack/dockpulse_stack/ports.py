"""Is a port the stack needs already taken, and by which process?"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from dockpulse_stack.errors import StackError

LISTEN = "0A"  # TCP state in /proc/net/tcp


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) == 0


def listener(port: int) -> str | None:
    """`name (pid N)` of the process listening on `port`, when /proc tells."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in fds):
                return f"{Path(f'/proc/{pid}/comm').read_text().strip()} (pid {pid})"
        except OSError:
            continue
    return None


def check_ports_free(ports: dict[str, int]) -> None:
    """StackError naming the first service whose port something else listens on."""
    for service, port in ports.items():
        if port_in_use(port):
            who = listener(port) or "another process"
            raise StackError(
                f"port {port} (for {service}) is already in use by {who}: stop it, then try again"
            )
