"""dockpulse's HTTP prober side by side with the real blackbox_exporter (Debian's
prometheus-blackbox-exporter, module http_2xx) on the same local targets."""

from __future__ import annotations

import datetime
import http.client
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client.parser import text_string_to_metric_families

from dockpulse_exporter.config import Probe
from dockpulse_exporter.probes import ProbeRun, probe_once
from tests.helpers import free_port, wait_until

BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
TIMEOUT = 1.0
COMPARED = ("probe_success", "probe_http_status_code", "probe_http_ssl", "probe_http_redirects")
RELEASE = threading.Event()  # set at teardown: lets the /hang handlers return


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do

    def do_GET(self) -> None:
        if self.path == "/hang":
            RELEASE.wait(TIMEOUT * 3)
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/ok")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(503 if self.path == "/unavailable" else 200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        return


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        return  # probers close connections abruptly (a failed TLS handshake, a timeout)


def serve(tls: ssl.SSLContext | None = None) -> ThreadingHTTPServer:
    server = QuietServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def url(server: ThreadingHTTPServer, path: str, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{server.server_address[1]}{path}"


def expired_self_signed(directory: Path) -> ssl.SSLContext:
    """A server context with a self-signed certificate that expired yesterday."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=30))
        .not_valid_after(now - datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


@pytest.fixture(scope="module")
def blackbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = tmp_path_factory.mktemp("blackbox") / "blackbox.yml"
    config.write_text(
        "modules:\n  http_2xx:\n    prober: http\n"
        f"    timeout: {int(TIMEOUT * 1000)}ms\n    http:\n      preferred_ip_protocol: ip4\n"
    )
    address = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [BLACKBOX, f"--config.file={config}", f"--web.listen-address={address}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: requests.get(f"http://{address}/", timeout=1).ok, timeout=10)
        yield f"http://{address}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def blackbox_says(blackbox: str, target: str) -> dict[str, float]:
    answer = requests.get(
        f"{blackbox}/probe", params={"module": "http_2xx", "target": target}, timeout=5
    )
    answer.raise_for_status()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
        if sample.name in COMPARED
    }


def dockpulse_says(target: str) -> tuple[dict[str, float], ProbeRun]:
    run = probe_once(Probe(name="t", url=target, timeout=TIMEOUT, expected_status=[200]))
    return {
        "probe_success": float(run.success),
        "probe_http_status_code": float(run.status_code),
        "probe_http_ssl": float(run.ssl),
        "probe_http_redirects": float(run.redirects),
    }, run


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    plain = serve()
    tls = serve(expired_self_signed(tmp_path_factory.mktemp("tls")))
    yield {
        "ok": url(plain, "/ok"),
        "unavailable": url(plain, "/unavailable"),
        "redirect": url(plain, "/redirect"),
        "hang": url(plain, "/hang"),
        "refused": f"http://127.0.0.1:{free_port()}/health",
        "expired_tls": url(tls, "/ok", scheme="https"),
    }
    RELEASE.set()
    plain.shutdown()
    tls.shutdown()


EXPECTED = {
    "ok": (1, 200, None),
    "unavailable": (0, 503, "status"),
    "redirect": (1, 200, None),
    "hang": (0, 0, "timeout"),
    "refused": (0, 0, "refused"),
    "expired_tls": (0, 0, "tls"),
}


@pytest.mark.parametrize("target", list(EXPECTED))
def test_dockpulse_agrees_with_blackbox_exporter(blackbox, targets, target) -> None:
    ours, run = dockpulse_says(targets[target])
    assert ours == blackbox_says(blackbox, targets[target])
    success, status, reason = EXPECTED[target]
    assert (ours["probe_success"], ours["probe_http_status_code"]) == (success, status)
    assert run.failure == reason
    assert run.duration <= TIMEOUT + 0.5
    if target == "redirect":
        assert ours["probe_http_redirects"] == 1
        assert run.content_length == 2
        assert run.http_version == 1.1


def test_a_server_that_stopped_accepting_fails_although_an_old_connection_is_served(
    blackbox,
) -> None:
    server = serve()
    target = url(server, "/ok")
    assert dockpulse_says(target)[0]["probe_success"] == 1
    old = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=TIMEOUT)
    old.request("GET", "/ok")
    assert old.getresponse().read() == b"ok"
    server.shutdown()  # stops accepting; the listening socket stays, its accept queue fills
    try:
        old.request("GET", "/ok")  # the keep-alive connection opened before is still served
        assert old.getresponse().status == 200
        ours, run = dockpulse_says(target)
        assert ours == blackbox_says(blackbox, target)
        assert ours["probe_success"] == 0
        assert ours["probe_http_status_code"] == 0
        assert run.failure == "timeout"
        assert run.phases["connect"] > 0  # the kernel completed the handshake; nobody answered
    finally:
        old.close()
        server.server_close()


def test_phases_add_up_to_the_whole_run(targets) -> None:
    _, run = dockpulse_says(targets["redirect"])
    assert run.success
    assert all(seconds >= 0 for seconds in run.phases.values())
    assert run.phases["tls"] == 0
    assert sum(run.phases.values()) <= run.duration
