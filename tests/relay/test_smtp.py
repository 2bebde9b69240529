"""Delivery through SMTP against a real aiosmtpd server: STARTTLS, login, 4xx retried, 5xx dead."""

from __future__ import annotations

import datetime
import email
import email.policy
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.helpers import free_port, value, wait_until
from tests.relay.payloads import alert, notification

USER, PASSWORD = "relay", "smtp-secret"


class Mailbox:
    """aiosmtpd handler: keeps what arrives; answers DATA from `replies` first, then 250."""

    def __init__(self, replies: list[str] | None = None) -> None:
        self.replies = list(replies or [])
        self.received: list[tuple[str, list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd hook
        if self.replies:
            return self.replies.pop(0)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 OK"


def authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == USER.encode()
    ok = ok and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, which the relay is told to trust."""
    folder = tmp_path_factory.mktemp("smtp-tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def smtp_server(mailbox: Mailbox, certificate: tuple[Path, Path]) -> Controller:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        authenticator=authenticate,
    )
    controller.start()
    return controller


@pytest.fixture
def smtp(certificate) -> Iterator:
    started: list[Controller] = []

    def start(replies: list[str] | None = None) -> tuple[Mailbox, Controller]:
        mailbox = Mailbox(replies)
        started.append(smtp_server(mailbox, certificate))
        return mailbox, started[-1]

    yield start
    for controller in started:
        controller.stop()


def smtp_env(controller: Controller, cert_file: Path) -> dict[str, str]:
    return {
        "MAIL_BACKEND": "smtp",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(controller.port),
        "SMTP_USERNAME": USER,
        "SMTP_PASSWORD": PASSWORD,
        "SMTP_STARTTLS": "true",
        "SSL_CERT_FILE": str(cert_file),  # trust the test's own CA, as an operator would
        "SENDER_EMAIL": "alerts@dockpulse.example",
        "RECIPIENT_EMAILS": "ops@dockpulse.example",
        "RETRY_INITIAL_DELAY": "0.2",
    }


def test_mail_goes_over_starttls_with_login(start_relay, smtp, certificate) -> None:
    mailbox, controller = smtp()
    relay = start_relay(**smtp_env(controller, certificate[0]))
    relay.post(notification(alert("ContainerDown", "webapp")))
    sender, recipients, message = wait_until(lambda: mailbox.received)[0]
    assert sender == "alerts@dockpulse.example"
    assert recipients == ["ops@dockpulse.example"]
    assert message["Subject"] == "[CRITICAL] 1 alert: ContainerDown (webapp)"
    assert message.get_content_type() == "multipart/alternative"
    # Counted once the server has answered, a moment after the mailbox has the message.
    wait_until(
        lambda: value(relay.metrics(), "dockpulse_relay_mails_sent_total", backend="smtp") == 1
    )


def test_4xx_is_retried_and_5xx_dead_lettered(start_relay, smtp, certificate) -> None:
    busy_box, busy = smtp(["451 4.3.0 mailbox busy, try later"])
    relay = start_relay(**smtp_env(busy, certificate[0]))
    relay.post(notification(alert("ContainerDown", "webapp")))
    wait_until(lambda: busy_box.received, timeout=15)
    wait_until(
        lambda: value(relay.metrics(), "dockpulse_relay_mail_failures_total", backend="smtp") == 1
    )

    refusing_box, refusing = smtp(["554 5.7.1 message refused"] * 5)
    relay = start_relay(**smtp_env(refusing, certificate[0]))
    relay.post(notification(alert("ContainerDown", "webapp")))
    wait_until(
        lambda: value(relay.metrics(), "dockpulse_relay_mails_dead_lettered_total", backend="smtp")
    )
    assert refusing_box.received == []
    assert len(refusing_box.replies) == 4  # tried once, not again
