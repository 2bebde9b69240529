"""A real aiosmtpd server for the relay tests: STARTTLS with a self-signed certificate, login,
and scripted replies."""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from testkit.helpers import free_port
from testkit.mail import parse

USER, PASSWORD = "relay", "smtp-secret"


class Mailbox:
    """aiosmtpd handler: keeps what arrives; answers DATA from `replies` first, then 250."""

    def __init__(self, replies: list[str] | None = None) -> None:
        self.replies = list(replies or [])
        self.received: list[tuple[str, list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd hook
        if self.replies:
            return self.replies.pop(0)
        message = parse(envelope.content)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 OK"


def authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == USER.encode()
    ok = ok and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok)


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


class SlowMailbox(Mailbox):
    """Takes `delay` seconds over every digest and then answers `digest_reply` (e.g. a 451):
    a backlog of slow, failing bulk mail. Other mails are taken at once."""

    def __init__(self, delay: float, digest_reply: str = "250 OK") -> None:
        super().__init__()
        self.delay = delay
        self.digest_reply = digest_reply
        self.digest_attempts = 0

    async def handle_DATA(self, server, session, envelope) -> str:
        if b"X-Dockpulse-Kind: digest" in envelope.content:
            self.digest_attempts += 1
            await asyncio.sleep(self.delay)
            if not self.digest_reply.startswith("250"):
                return self.digest_reply
        return await super().handle_DATA(server, session, envelope)
