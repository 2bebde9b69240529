"""A slow or idle client cannot hold the relay's HTTP server: each request must arrive within
RELAY_READ_TIMEOUT, and at most RELAY_MAX_CONNECTIONS are served at once."""

from __future__ import annotations

import socket
import time
from contextlib import closing

import pytest

from testkit.helpers import value, wait_until
from tests.relay.payloads import alert, notification

# Not store-sensitive (HTTP limits): the SQLite store only.
pytestmark = pytest.mark.sqlite_only


def connect(relay) -> socket.socket:
    return socket.create_connection(("127.0.0.1", relay.port), timeout=10)


def test_a_slow_client_is_cut_off_after_the_read_timeout(start_relay) -> None:
    relay = start_relay(RELAY_READ_TIMEOUT="1s")
    with closing(connect(relay)) as slow:
        slow.sendall(b"POST /webhook HTTP/1.1\r\nHost: relay\r\n")  # and then nothing more
        started = time.monotonic()
        while slow.recv(1024):  # until the server closes the connection
            pass
        waited = time.monotonic() - started
    assert waited < 8, "the connection stayed open"
    with closing(connect(relay)) as dribbling:  # one header line every 0.5 s, forever
        closed = False
        for number in range(20):
            try:
                dribbling.sendall(f"X-Slow-{number}: 1\r\n".encode())
            except OSError:
                closed = True
                break
            time.sleep(0.5)
        assert closed or dribbling.recv(1024) == b"", "a dribbling client held the server"
    assert relay.post(notification(alert())).status_code == 200


def test_connections_beyond_the_bound_are_turned_away(start_relay) -> None:
    relay = start_relay(RELAY_MAX_CONNECTIONS="2", RELAY_READ_TIMEOUT="30s")
    idle = [connect(relay) for _ in range(4)]  # none sends a request
    try:
        time.sleep(0.5)
        replies = []
        for each in idle:
            each.settimeout(1.0)
            try:
                replies.append(each.recv(1024))
            except TimeoutError:
                replies.append(b"")  # holds one of the two slots
        turned_away = [reply for reply in replies if reply.startswith(b"HTTP/1.1 503")]
        assert len(turned_away) >= 2, replies  # at most 2 served at once
        assert b"too many connections" in turned_away[0]
    finally:
        for each in idle:
            each.close()
    wait_until(lambda: relay.post(notification(alert())).status_code == 200, timeout=10)
    assert value(relay.metrics(), "dockpulse_relay_alerts_queued_total") == 1
