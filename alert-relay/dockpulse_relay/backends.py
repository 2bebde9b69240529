"""Where mails go: an outbox folder, Amazon SES (sesv2) or an SMTP server.

Every backend sends the stored message byte for byte and sorts failures into two kinds:
`TransientError` (throttling, 5xx, network trouble: retried later) and `PermanentError`
(the message or the account is refused: dead-lettered at once).
"""

from __future__ import annotations

import os
import smtplib
import ssl
from pathlib import Path
from typing import Protocol

from dockpulse_relay.config import RelayConfig


class DeliveryError(Exception):
    """A mail could not be delivered this time."""


class TransientError(DeliveryError):
    """Worth retrying: throttled, a server error, a network failure."""


class PermanentError(DeliveryError):
    """Not worth retrying: the mail or the sender is refused."""


class Backend(Protocol):
    name: str

    def send(self, message_id: str, message: bytes) -> None: ...


class OutboxBackend:
    """Each mail as `<message id>.eml` in a folder; sending twice rewrites the same file."""

    name = "outbox"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def send(self, message_id: str, message: bytes) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            target = self.folder / f"{message_id}.eml"
            partial = self.folder / f".{message_id}.eml.tmp"
            partial.write_bytes(message)
            os.replace(partial, target)
        except OSError as exc:
            raise TransientError(f"outbox {self.folder}: {exc}") from exc


# sesv2 error codes: retry these, dead-letter the rest of the 4xx family.
SES_TRANSIENT_CODES = {
    "TooManyRequestsException",
    "Throttling",
    "ThrottlingException",
    "LimitExceededException",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalServerError",
    "RequestTimeout",
}


class SesBackend:
    """Amazon SES v2 `SendEmail` with raw content (the multipart message as composed)."""

    name = "ses"

    def __init__(self, config: RelayConfig) -> None:
        import boto3
        from botocore.config import Config

        self.sender = config.sender
        self.recipients = config.recipients
        self.client = boto3.client(
            "sesv2",
            region_name=config.aws_region,
            endpoint_url=config.aws_endpoint_url,
            # One attempt per call: the relay's own queue does the backing off, durably.
            config=Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=20),
        )

    def send(self, message_id: str, message: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.send_email(
                FromEmailAddress=self.sender,
                Destination={"ToAddresses": self.recipients},
                Content={"Raw": {"Data": message}},
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "Unknown")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            text = f"SES {code}: {error.get('Message', '')}".strip()
            if code in SES_TRANSIENT_CODES or status == 429 or status >= 500:
                raise TransientError(text) from exc
            raise PermanentError(text) from exc
        except BotoCoreError as exc:  # connection refused, timeouts, bad responses
            raise TransientError(f"SES: {exc}") from exc


class SmtpBackend:
    """SMTP submission, with STARTTLS (certificate checked) and login when configured."""

    name = "smtp"

    def __init__(self, config: RelayConfig) -> None:
        self.host = config.smtp_host or "localhost"
        self.port = config.smtp_port
        self.username = config.smtp_username
        self.password = config.smtp_password.get_secret_value() if config.smtp_password else ""
        self.starttls = config.smtp_starttls
        self.timeout = config.smtp_timeout
        self.sender = config.sender
        self.recipients = config.recipients

    def send(self, message_id: str, message: bytes) -> None:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                smtp.ehlo()
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
                if self.username:
                    smtp.login(self.username, self.password)
                refused = smtp.sendmail(self.sender, self.recipients, message)
        except smtplib.SMTPRecipientsRefused as exc:
            raise _by_code(min(code for code, _ in exc.recipients.values()), exc) from exc
        except smtplib.SMTPResponseException as exc:
            raise _by_code(exc.smtp_code, exc) from exc
        except smtplib.SMTPNotSupportedError as exc:  # e.g. no STARTTLS offered
            raise PermanentError(f"SMTP: {exc}") from exc
        except (smtplib.SMTPException, OSError) as exc:  # refused, timed out, TLS failed
            raise TransientError(f"SMTP: {exc}") from exc
        if refused:
            raise PermanentError(f"SMTP refused recipients: {', '.join(sorted(refused))}")


def _by_code(code: int, exc: Exception) -> DeliveryError:
    """SMTP replies: 4xx are temporary, 5xx permanent."""
    text = f"SMTP {code}: {exc}"
    return TransientError(text) if 400 <= code < 500 else PermanentError(text)


def make_backend(config: RelayConfig) -> Backend:
    if config.mail_backend == "ses":
        return SesBackend(config)
    if config.mail_backend == "smtp":
        return SmtpBackend(config)
    return OutboxBackend(config.outbox_dir)
