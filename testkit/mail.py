"""Reading mails: their text, and the ones the relay's outbox backend writes (`<message id>.eml`,
one per mail)."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass
from email.message import EmailMessage, Message
from pathlib import Path

from testkit.helpers import wait_until


@dataclass(frozen=True)
class Mail:
    path: Path
    subject: str
    text: str  # the subject and every text part, decoded
    arrived: float  # when the relay wrote it (file mtime, seconds since the epoch)
    message: EmailMessage  # the whole mail, parsed


def parse(data: bytes) -> EmailMessage:
    """A mail's RFC 5322 bytes (the outbox's .eml, an SMTP DATA, a composed message), parsed
    with the modern policy: the one way the tests and benches read a mail."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def text_of(message: EmailMessage) -> str:
    """A mail's plain-text part, decoded, with plain newlines."""
    return message.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")


def mail_text(message: Message) -> str:
    """Subject and every text part of a mail, decoded."""
    parts = [str(message["Subject"])]
    for part in message.walk():
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True)
            parts.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
    return "\n".join(parts)


def read_outbox(outbox: Path) -> list[Mail]:
    """Every mail in `outbox`, oldest first (none when the folder does not exist yet)."""
    if not outbox.is_dir():
        return []
    found = []
    for path in outbox.glob("*.eml"):
        message = parse(path.read_bytes())
        subject = str(message["Subject"]).strip()  # a folded header may start with a space
        written = path.stat().st_mtime_ns
        found.append((written, Mail(path, subject, mail_text(message), written / 1e9, message)))
    return [mail for _, mail in sorted(found, key=lambda item: item[0])]


def outbox_messages(outbox: Path) -> list[EmailMessage]:
    """Every message in `outbox`, in the order they were written."""
    return [mail.message for mail in read_outbox(outbox)]


def mails_about(outbox: Path, *words: str, since: float = 0.0) -> list[Mail]:
    """The mails written at or after `since` whose subject or text contains every word."""
    return [
        mail
        for mail in read_outbox(outbox)
        if mail.arrived >= since and all(word in mail.text for word in words)
    ]


def wait_for_mail(outbox: Path, *words: str, since: float = 0.0, timeout: float = 45) -> Mail:
    """The first mail written since `since` that contains every word."""
    return wait_until(lambda: mails_about(outbox, *words, since=since), timeout=timeout)[0]
