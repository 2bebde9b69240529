"""dockpulse's HTTP prober side by side with the real blackbox_exporter (Debian's
prometheus-blackbox-exporter, module http_2xx) on the same local targets."""

from __future__ import annotations

import datetime
import http.client
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from dockpulse_exporter.config import Probe
from dockpulse_exporter.probes import ProbeRun, probe_once
from testkit.certificates import certificate, new_key, write_pem
from testkit.helpers import free_port, wait_until

BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
TIMEOUT = 1.0
COMPARED = (
    "probe_success",
    "probe_http_status_code",
    "probe_http_ssl",
    "probe_http_redirects",
    "probe_ssl_earliest_cert_expiry",
)
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
        if self.path == "/degraded":
            self.answer(200, b"status: degraded")
            return
        self.answer(503 if self.path == "/unavailable" else 200, b"ok")

    def do_POST(self) -> None:
        """/ping answers pong to a POST of "ping" with the header X-Probe: yes, else 400."""
        sent = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        ping = sent == b"ping" and self.headers.get("X-Probe") == "yes"
        self.answer(200 if ping else 400, b"pong" if ping else b"bad ping")

    def answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

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


def server_context(directory: Path, stem: str, cert: x509.Certificate, key) -> ssl.SSLContext:
    """Write `stem`.pem and `stem`.key; return a server context serving that certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(
        *write_pem(directory / f"{stem}.pem", directory / f"{stem}.key", cert, key)
    )
    return context


@dataclass
class Pki:
    ca_file: Path
    expiring: ssl.SSLContext  # signed by the CA, expires in 3 days
    expiring_not_after: float
    expired: ssl.SSLContext  # self-signed, expired yesterday


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    day = datetime.timedelta(days=1)
    ca_key, leaf_key, expired_key = (new_key() for _ in range(3))
    ca = certificate("dockpulse test CA", ca_key, None, (-day, 30 * day), ca=True)
    server_context(directory, "ca", ca, ca_key)
    leaf = certificate("127.0.0.1", leaf_key, ("dockpulse test CA", ca_key), (-day, 3 * day))
    expired = certificate("127.0.0.1", expired_key, None, (-30 * day, -day))
    return Pki(
        ca_file=directory / "ca.pem",
        expiring=server_context(directory, "leaf", leaf, leaf_key),
        expiring_not_after=leaf.not_valid_after_utc.timestamp(),
        expired=server_context(directory, "expired", expired, expired_key),
    )


@pytest.fixture(scope="module")
def blackbox(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[str]:
    config = tmp_path_factory.mktemp("blackbox") / "blackbox.yml"
    module = f"    prober: http\n    timeout: {int(TIMEOUT * 1000)}ms\n    http:\n"
    config.write_text(
        f"modules:\n  http_2xx:\n{module}"
        f"  http_2xx_ca:\n{module}      tls_config:\n        ca_file: {pki.ca_file}\n"
        f"  http_2xx_insecure:\n{module}      tls_config:\n        insecure_skip_verify: true\n"
        f"  http_healthy:\n{module}      fail_if_body_not_matches_regexp: [healthy]\n"
        f"  http_not_degraded:\n{module}      fail_if_body_matches_regexp: [degraded]\n"
        f"  http_ping:\n{module}      method: POST\n      headers: {{X-Probe: 'yes'}}\n"
        "      body: ping\n      fail_if_body_not_matches_regexp: [pong]\n"
        f"  tcp_connect:\n    prober: tcp\n    timeout: {int(TIMEOUT * 1000)}ms\n"
        f"  tcp_tls:\n    prober: tcp\n    timeout: {int(TIMEOUT * 1000)}ms\n    tcp:\n"
        f"      tls: true\n      tls_config:\n        ca_file: {pki.ca_file}\n"
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


def blackbox_says(blackbox: str, target: str, module: str = "http_2xx") -> dict[str, float]:
    answer = requests.get(
        f"{blackbox}/probe", params={"module": module, "target": target}, timeout=5
    )
    answer.raise_for_status()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
        if sample.name in COMPARED
    }


def dockpulse_says(target: str, **options: object) -> tuple[dict[str, float], ProbeRun]:
    probe = Probe(name="t", url=target, timeout=TIMEOUT, expected_status=[200], **options)
    run = probe_once(probe)
    said = {
        "probe_success": float(run.success),
        "probe_http_status_code": float(run.status_code),
        "probe_http_ssl": float(run.ssl),
        "probe_http_redirects": float(run.redirects),
    }
    if run.cert_expiry is not None:
        said["probe_ssl_earliest_cert_expiry"] = run.cert_expiry
    return said, run


@pytest.fixture(scope="module")
def targets(pki: Pki) -> Iterator[dict[str, str]]:
    plain = serve()
    tls = serve(pki.expired)
    private = serve(pki.expiring)
    yield {
        "ok": url(plain, "/ok"),
        "unavailable": url(plain, "/unavailable"),
        "redirect": url(plain, "/redirect"),
        "hang": url(plain, "/hang"),
        "refused": f"http://127.0.0.1:{free_port()}/health",
        "expired_tls": url(tls, "/ok", scheme="https"),
        "private_ca": url(private, "/ok", scheme="https"),
    }
    RELEASE.set()
    for server in (plain, tls, private):
        server.shutdown()


EXPECTED = {
    "ok": (1, 200, None),
    "unavailable": (0, 503, "status"),
    "redirect": (1, 200, None),
    "hang": (0, 0, "timeout"),
    "refused": (0, 0, "refused"),
    "expired_tls": (0, 0, "tls"),
    "private_ca": (0, 0, "tls"),  # verified against the system's CAs: refused
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


@pytest.mark.parametrize(
    ("target", "module", "options"),
    [
        ("private_ca", "http_2xx_ca", {"ca_file": "CA"}),
        ("expired_tls", "http_2xx_insecure", {"insecure_skip_verify": True}),
    ],
)
def test_tls_against_a_private_ca_or_unverified_agrees_with_blackbox_exporter(
    blackbox, targets, pki, target, module, options
) -> None:
    options = {k: pki.ca_file if v == "CA" else v for k, v in options.items()}
    ours, run = dockpulse_says(targets[target], **options)
    assert ours == blackbox_says(blackbox, targets[target], module)  # expiry to the second
    assert ours["probe_success"] == 1 and ours["probe_http_ssl"] == 1
    assert run.tls_version == "TLS 1.3"
    assert run.phases["tls"] > 0
    if target == "private_ca":
        assert run.cert_expiry == pki.expiring_not_after
    else:
        assert run.cert_expiry < time.time()  # expired, and reported as such


def test_tls_options_need_an_https_url() -> None:
    with pytest.raises(ValueError, match="need an https url"):
        Probe(name="t", url="http://127.0.0.1/", insecure_skip_verify=True)


PING = {"method": "POST", "headers": {"X-Probe": "yes"}, "body": "ping"}


@pytest.mark.parametrize(
    ("path", "module", "options", "expected"),
    [
        ("/degraded", "http_healthy", {"fail_if_body_not_matches_regexp": ["healthy"]}, "body"),
        ("/degraded", "http_not_degraded", {"fail_if_body_matches_regexp": ["degraded"]}, "body"),
        ("/ok", "http_not_degraded", {"fail_if_body_matches_regexp": ["degraded"]}, None),
        ("/ping", "http_ping", {**PING, "fail_if_body_not_matches_regexp": ["pong"]}, None),
    ],
)
def test_body_checks_method_headers_and_body_agree_with_blackbox_exporter(
    blackbox, targets, path, module, options, expected
) -> None:
    target = targets["ok"].removesuffix("/ok") + path
    ours, run = dockpulse_says(target, **options)
    assert ours == blackbox_says(blackbox, target, module)
    assert run.failure == expected
    assert ours["probe_http_status_code"] == 200  # a body failure keeps the status


def test_a_post_without_its_header_fails_on_status() -> None:
    server = serve()
    try:
        _, run = dockpulse_says(url(server, "/ping"), method="POST", body="ping")
        assert (run.status_code, run.failure) == (400, "status")
    finally:
        server.shutdown()
        server.server_close()


def test_a_bad_body_regex_is_a_clear_error_naming_the_field() -> None:
    with pytest.raises(ValueError, match="fail_if_body_matches_regexp"):
        Probe(name="t", url="http://127.0.0.1/", fail_if_body_matches_regexp=["("])


@pytest.mark.parametrize(
    ("target", "module", "options", "expected"),
    [
        ("ok", "tcp_connect", {}, None),
        ("refused", "tcp_connect", {}, "refused"),
        ("private_ca", "tcp_tls", {"tls": True, "ca_file": "CA"}, None),
        ("expired_tls", "tcp_tls", {"tls": True, "ca_file": "CA"}, "tls"),
    ],
)
def test_tcp_probes_agree_with_blackbox_exporter(
    blackbox, targets, pki, target, module, options, expected
) -> None:
    address = targets[target].split("://")[1].split("/")[0]
    options = {k: pki.ca_file if v == "CA" else v for k, v in options.items()}
    run = probe_once(Probe(name="t", url=f"tcp://{address}", timeout=TIMEOUT, **options))
    theirs = blackbox_says(blackbox, address, module)
    assert run.success == bool(theirs["probe_success"])
    assert run.failure == expected
    assert run.cert_expiry == theirs.get("probe_ssl_earliest_cert_expiry")
    if target == "private_ca":
        assert run.cert_expiry == pki.expiring_not_after


def test_a_tcp_url_needs_a_port() -> None:
    with pytest.raises(ValueError, match="needs a port"):
        Probe(name="t", url="tcp://127.0.0.1")
