"""A slow or idle client cannot hold the exporter's server (issue 9, the exporter's half)."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import requests

from testkit.helpers import wait_until


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True


def test_idle_and_dribbling_clients_are_cut_and_bounded(start_exporter) -> None:
    exporter = start_exporter(http_read_timeout="1s", http_max_connections=4)
    idle = [connect(exporter.url) for _ in range(4)]  # connect, then send nothing
    time.sleep(0.3)
    # Every slot is held: a fifth connection is closed at once instead of waiting for a thread.
    extra = connect(exporter.url)
    extra.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
    assert closed_by_server(extra)
    # The idle ones are cut after the read timeout, and scrapes are served again.
    started = time.monotonic()
    assert all(closed_by_server(sock) for sock in idle)
    assert time.monotonic() - started < 5
    assert requests.get(exporter.url, timeout=5).status_code == 200
    # A client dribbling its request one byte at a time is cut by the total deadline too.
    dribbler = connect(exporter.url)
    started = time.monotonic()
    cut = False
    for byte in b"GET /metrics HTTP/1.0\r\nX-Slow: " + b"a" * 100:
        try:
            dribbler.sendall(bytes([byte]))
        except OSError:
            cut = True
            break
        dribbler.settimeout(0.2)
        try:
            if dribbler.recv(1024) == b"":
                cut = True
                break
        except TimeoutError:
            pass
        except ConnectionResetError:
            cut = True
            break
    assert cut and time.monotonic() - started < 5
    wait_until(lambda: requests.get(exporter.url, timeout=5).status_code == 200, timeout=5)
    for sock in (*idle, extra, dribbler):
        sock.close()
