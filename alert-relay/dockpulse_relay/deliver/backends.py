"""Where mails go: an outbox folder, Amazon SES (sesv2) or an SMTP server.

Every backend sends the stored message byte for byte and sorts failures into three kinds:
`TransientError` (throttling, 5xx, network trouble: retried with backoff), `AccountError`
(credentials, identity or account refused: nothing can be sent until someone fixes it, so the
mail stays queued and is retried slowly while the relay says so) and `PermanentError` (this one
message is refused: dead-lettered). Every attempt is bounded by the client's timeouts.
"""

from __future__ import annotations

import logging
import os
import re
import smtplib
import ssl
from pathlib import Path
from typing import Protocol

from dockpulse_relay.config import RelayConfig

log = logging.getLogger("dockpulse_relay.backends")


class DeliveryError(Exception):
    """A mail could not be delivered this time."""


class TransientError(DeliveryError):
    """Worth retrying: throttled, a server error, a network failure."""


class AccountError(DeliveryError):
    """No mail can go out until the account or credentials are fixed (not this mail's fault)."""


class PermanentError(DeliveryError):
    """This message alone is refused: retrying it will not help."""


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


# SES v2 error codes (botocore ClientError `Error.Code`), sorted as AWS documents them:
# https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html#API_SendEmail_Errors
# and the common errors (https://docs.aws.amazon.com/ses/latest/APIReference-V2/CommonErrors.html).
SES_TRANSIENT_CODES = {
    "TooManyRequestsException",
    "Throttling",
    "ThrottlingException",
    "LimitExceededException",  # a sending quota: comes back by itself
    "ServiceUnavailable",
    "InternalFailure",
    "InternalServerError",
    "RequestTimeout",
    "RequestTimeoutException",
}
SES_ACCOUNT_CODES = {
    "AccessDenied",
    "AccessDeniedException",
    "ExpiredToken",
    "ExpiredTokenException",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "NotAuthorized",
    "OptInRequired",
    "AccountSuspendedException",
    "AccountSuspended",
    "SendingPausedException",
    "MailFromDomainNotVerifiedException",
}
# MessageRejected is both: "Email address is not verified" concerns every mail (the sender
# identity), anything else (content, size) this one.
UNVERIFIED_IDENTITY = (
    "not verified",
    "not authorized to send",
    "did not have authority",
    "identity",
)


EMBEDDED_CODE = re.compile(r"<Code>(\w+)</Code>\s*<Message>([^<]*)</Message>")


def classify_ses(code: str, status: int, message: str) -> type[DeliveryError]:
    """Which kind of failure an SES error response is."""
    if code in SES_TRANSIENT_CODES or status == 429 or status >= 500:
        return TransientError
    if code in SES_ACCOUNT_CODES or status in (401, 403):
        return AccountError
    if code == "MessageRejected" and any(word in message.lower() for word in UNVERIFIED_IDENTITY):
        return AccountError
    return PermanentError


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
            config=Config(
                retries={"total_max_attempts": 1},
                connect_timeout=min(5.0, config.delivery_timeout),
                read_timeout=config.delivery_timeout,
            ),
        )

    def send(self, message_id: str, message: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

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
            message = error.get("Message", "")
            embedded = EMBEDDED_CODE.search(message)  # an XML error body where JSON was expected
            if embedded:
                code, message = embedded.group(1), embedded.group(2)
            raise classify_ses(code, status, message)(f"SES {code}: {message}".strip()) from exc
        except NoCredentialsError as exc:  # nothing configured: nothing can be sent
            raise AccountError(f"SES: {exc}") from exc
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
        self.timeout = min(config.smtp_timeout, config.delivery_timeout)
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
        except smtplib.SMTPRecipientsRefused as exc:  # the same recipients for every mail
            code = min(code for code, _ in exc.recipients.values())
            raise _by_code(code, exc, refused=AccountError) from exc
        except smtplib.SMTPDataError as exc:  # the content of this message is refused
            raise _by_code(exc.smtp_code, exc) from exc
        except smtplib.SMTPResponseException as exc:  # login, sender, HELO: every mail
            raise _by_code(exc.smtp_code, exc, refused=AccountError) from exc
        except smtplib.SMTPNotSupportedError as exc:  # e.g. no STARTTLS offered
            raise AccountError(f"SMTP: {exc}") from exc
        except (smtplib.SMTPException, OSError) as exc:  # refused, timed out, TLS failed
            raise TransientError(f"SMTP: {exc}") from exc
        if refused:  # some recipients took it: a retry would send it to them twice
            log.warning("SMTP refused recipients: %s", ", ".join(sorted(refused)))


def _by_code(
    code: int, exc: Exception, refused: type[DeliveryError] = PermanentError
) -> DeliveryError:
    """SMTP replies: 4xx are temporary; 5xx are `refused` (whose fault: see the caller)."""
    text = f"SMTP {code}: {exc}"
    return TransientError(text) if 400 <= code < 500 else refused(text)


def make_backend(config: RelayConfig, name: str | None = None) -> Backend:
    name = name or config.mail_backend
    if name == "ses":
        return SesBackend(config)
    if name == "smtp":
        return SmtpBackend(config)
    return OutboxBackend(config.outbox_dir)
