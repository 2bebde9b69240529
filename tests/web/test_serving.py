"""The shared HTTP server under a web config: TLS, basic auth on every route, headers, the
bcrypt cache. The exporter's real server in this process (no Docker: an empty exposition)."""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests
import yaml
from prometheus_client import CollectorRegistry

from dockpulse.basic_auth import BasicAuth
from dockpulse.http_server import BoundedHTTPServer
from dockpulse.web_config import load_web_config
from dockpulse_exporter.exposition import Exposition
from dockpulse_exporter.http import make_server
from testkit.passwords import bcrypt_hash
from testkit.tls import Certificates

PASSWORD = "alice-test-password"
HASH = bcrypt_hash(PASSWORD)


@pytest.fixture
def serve(tmp_path: Path, certificates: Certificates) -> Iterator[Callable[..., str]]:
    """Start the exporter's server with a web config (TLS with the test certificates, `tls`
    keys added, users and headers as given); returns its https:// URL."""
    servers: list[BoundedHTTPServer] = []

    def start(tls: dict[str, Any] | None = None, **sections: Any) -> str:
        config = {
            "tls_server_config": {
                "cert_file": str(certificates.server_cert),
                "key_file": str(certificates.server_key),
                **(tls or {}),
            },
            **sections,
        }
        path = tmp_path / f"web-{len(servers)}.yml"
        path.write_text(yaml.safe_dump(config))
        exposition = Exposition(list, CollectorRegistry(auto_describe=False))
        server = make_server("127.0.0.1", 0, exposition, 5.0, 8, load_web_config(path))
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"https://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_every_route_asks_for_credentials(serve: Callable[..., str], certificates: Certificates):
    headers = {"X-Frame-Options": "deny", "Strict-Transport-Security": "max-age=31536000"}
    url = serve(basic_auth_users={"alice": HASH}, http_server_config={"headers": headers})
    ca = str(certificates.ca)
    for method, path in [
        ("GET", "/metrics"),
        ("GET", "/"),
        ("GET", "/-/healthy"),
        ("GET", "/a-route-added-later"),
        ("POST", "/metrics"),
        ("DELETE", "/"),
    ]:
        for auth in [None, ("alice", "wrong"), ("mallory", PASSWORD), ("alice", PASSWORD + "x")]:
            answer = requests.request(method, url + path, auth=auth, verify=ca, timeout=5)
            assert answer.status_code == 401, (method, path, auth)
            assert answer.headers["WWW-Authenticate"] == "Basic"
            assert answer.headers["X-Frame-Options"] == "deny"
        answer = requests.request(
            method, url + path, auth=("alice", PASSWORD), verify=ca, timeout=5
        )
        assert answer.status_code != 401, (method, path)
        assert answer.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert requests.get(url + "/metrics", auth=("alice", PASSWORD), verify=ca).status_code == 200


def test_a_tls_connection_is_kept_alive_across_scrapes(
    serve: Callable[..., str], certificates: Certificates
) -> None:
    """One handshake, several authorised scrapes on it (HTTP/1.1 keep-alive)."""
    url = serve(basic_auth_users={"alice": HASH})
    context = ssl.create_default_context(cafile=str(certificates.ca))
    port = int(url.rpartition(":")[2])
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
    token = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    sockets = []
    try:
        for _ in range(3):
            connection.request("GET", "/metrics", headers={"Authorization": f"Basic {token}"})
            answer = connection.getresponse()
            answer.read()
            assert answer.status == 200 and answer.version == 11
            assert answer.getheader("Connection") != "close"
            sockets.append(connection.sock)
    finally:
        connection.close()
    assert sockets[0] is not None and sockets == [sockets[0]] * 3


def test_untrusted_or_plain_clients_get_nothing(
    serve: Callable[..., str], certificates: Certificates
) -> None:
    url = serve(basic_auth_users={"alice": HASH})
    with pytest.raises(requests.exceptions.SSLError):  # the server's CA is not the system's
        requests.get(url + "/metrics", auth=("alice", PASSWORD), timeout=5)
    plain = url.replace("https://", "http://")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(plain + "/metrics", auth=("alice", PASSWORD), timeout=5)


def test_client_certificate_required(serve: Callable[..., str], certificates: Certificates):
    url = serve(
        {"client_ca_file": str(certificates.ca), "client_auth_type": "RequireAndVerifyClientCert"}
    )
    ca = str(certificates.ca)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url + "/metrics", verify=ca, timeout=5)
    mine = (str(certificates.client_cert), str(certificates.client_key))
    assert requests.get(url + "/metrics", verify=ca, cert=mine, timeout=5).status_code == 200
    # the server's own certificate is signed by the same CA but is not for client auth
    theirs = (str(certificates.server_cert), str(certificates.server_key))
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url + "/metrics", verify=ca, cert=theirs, timeout=5)


def test_min_version_refuses_older_clients(
    serve: Callable[..., str], certificates: Certificates
) -> None:
    url = serve({"min_version": "TLS13"})
    client = ssl.create_default_context(cafile=str(certificates.ca))
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    host, port = url.removeprefix("https://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as raw, pytest.raises(ssl.SSLError):
        client.wrap_socket(raw, server_hostname="localhost")


def test_bcrypt_runs_once_per_credential_and_failures_never_pass() -> None:
    bob_hash = bcrypt.hashpw(b"bob-password", bcrypt.gensalt(rounds=4))
    auth = BasicAuth({"alice": HASH.encode(), "bob": bob_hash}, cache_size=1)
    assert auth.verify(b"alice", PASSWORD.encode())
    assert auth.verify(b"alice", PASSWORD.encode())
    assert auth.bcrypt_checks_total == 1  # the second came from the cache
    for user, password in [
        (b"alice", b"wrong"),
        (b"alice", b"bob-password"),  # bob's password is not alice's
        (b"bob", PASSWORD.encode()),
        (b"carol", PASSWORD.encode()),  # unknown: bcrypt against the decoy all the same
        (b"alice", PASSWORD.encode() + b"\0"),
        (b"alice", PASSWORD.encode()[:-1]),
        (b"alice", b"x" * 100),  # beyond bcrypt's 72 bytes
        (b"al\xffice", PASSWORD.encode()),  # not UTF-8
    ]:
        before = auth.bcrypt_checks_total
        assert not auth.verify(user, password), (user, password)
        assert not auth.verify(user, password), "a failure is never remembered"
        assert auth.bcrypt_checks_total == before + 2
    assert auth.verify(b"bob", b"bob-password")  # evicts alice (cache of one)
    before = auth.bcrypt_checks_total
    assert auth.verify(b"alice", PASSWORD.encode())
    assert auth.bcrypt_checks_total == before + 1


@pytest.mark.parametrize(
    "header",
    [None, "", "Basic", "Basic !!!", "Bearer YWxpY2U6eA==", "Basic YWxpY2U=", "basic"],
)
def test_malformed_authorization_is_refused(header: str | None) -> None:
    assert not BasicAuth({"alice": HASH.encode()}).check(header)
