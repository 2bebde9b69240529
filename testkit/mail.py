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
    mails = []
    for path in outbox.glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        subject = str(message["Subject"]).strip()  # a folded header may start with a space
        mails.append(Mail(path, subject, mail_text(message), path.stat().st_mtime))
    return sorted(mails, key=lambda mail: mail.arrived)


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
