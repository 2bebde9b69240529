"""The exporter's Docker socket proxy (Debian's haproxy with exporter/socket-proxy/haproxy.cfg)
run on this machine, and a raw HTTP client for unix sockets to knock on it with any request.
Helpers for tests and benchmarks."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from dockpulse_stack.host_packages import ensure_debian_packages

REPO_ROOT = Path(__file__).resolve().parents[1]
PROXY_CONFIG = REPO_ROOT / "exporter" / "socket-proxy" / "haproxy.cfg"


def request(
    socket_path: Path, method: str, target: str, body: bytes | None = None, timeout: float = 10.0
) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a fresh connection, its request line exactly as given (no
    normalising of `..` or percent-escapes, as an attacker would send it); (status, head).

    A proxy may refuse and close before the body is read: a broken pipe still reads the answer.
    """
    head = f"{method} {target} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    payload = (head + "\r\n").encode() + (body or b"")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(socket_path))
        with suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(payload)
        answer = b""
        with suppress(ConnectionResetError):
            while b"\r\n\r\n" not in answer and (chunk := sock.recv(65536)):
                answer += chunk
    status_line = answer.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2:
        raise ConnectionError(f"{method} {target}: no HTTP answer ({answer[:80]!r})")
    return int(status_line[1]), answer


@contextmanager
def socket_proxy(docker_socket: Path, directory: Path) -> Iterator[Path]:
    """haproxy in front of `docker_socket`, listening on a unix socket in `directory` (yielded);
    stopped at exit. Its log (refusals included) is `directory/haproxy.log`."""
    ensure_debian_packages({"haproxy": "haproxy"})  # a fresh machine has none
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    directory.mkdir(parents=True, exist_ok=True)
    proxy_socket = directory / "docker-api.sock"
    environment = {
        "DOCKER_API_PROXY_BIND": f"unix@{proxy_socket}",
        "DOCKER_SOCKET": str(docker_socket),
    }
    with (directory / "haproxy.log").open("ab") as log:
        process = subprocess.Popen(
            [binary, "-db", "-f", str(PROXY_CONFIG)], env=environment, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 10
        while not proxy_socket.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"haproxy did not start: {(directory / 'haproxy.log').read_text()}"
                )
            time.sleep(0.05)
        yield proxy_socket
    finally:
        process.terminate()
        process.wait(timeout=10)
