"""What flows through the relay, stage to stage: the alert as received (intake), its buffered
and queued forms (store), the plan of mails (plan) and the mail composed from it (compose).

The bottom of the relay: it imports no other relay module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

# Labels that name the container, in order of preference (cAdvisor's `name` first).
CONTAINER_LABELS = ("name", "container", "container_label_com_docker_compose_service", "job")


@dataclass(frozen=True)
class Alert:
    """One alert notification; `key` makes a re-sent one recognisable."""

    fingerprint: str
    status: str
    starts_at: str
    ends_at: str
    alertname: str
    severity: str
    container: str
    labels: dict[str, str]
    annotations: dict[str, str]
    generator_url: str
    # Alertmanager's externalURL from the notification (silence links); "" in stores of
    # earlier releases, whose alerts' JSON has no such key.
    external_url: str = ""

    @property
    def key(self) -> str:
        return f"{self.fingerprint}|{self.status}|{self.starts_at}"

    @property
    def critical(self) -> bool:
        return self.severity == "critical"

    def to_json(self) -> str:
        return json.dumps(self.__dict__, separators=(",", ":"))  # flat: no deep copy needed

    @classmethod
    def from_json(cls, text: str) -> Alert:
        return cls(**json.loads(text))


def event_time_text(alert: Alert) -> str:
    return alert.ends_at if alert.status == "resolved" and alert.ends_at else alert.starts_at


@dataclass(frozen=True)
class BufferedAlert:
    id: int
    alert: Alert
    received_at: float
    held: bool = False  # held back by the cooldown (state held)


@dataclass(frozen=True)
class Cooldown:
    """The last mail about a fingerprint."""

    mailed_at: float
    status: str
    summary: bool


@dataclass(frozen=True)
class NewMail:
    """A composed mail and the alerts it carries, committed together."""

    message_id: str
    kind: str
    subject: str
    message: bytes
    alert_ids: list[int]
    first_received_at: float
    cooldown: list[tuple[str, str, bool]]  # (fingerprint, status, summary) it mails
    priority: int = 2
    error: str | None = None  # set: could not be composed, stored as a dead letter


@dataclass(frozen=True)
class QueuedMail:
    id: int
    message_id: str
    kind: str
    subject: str
    message: bytes
    first_received_at: float
    attempts: int
    priority: int = 2


@dataclass(frozen=True)
class DeadLetter:
    id: int
    message_id: str
    kind: str
    subject: str
    created_at: float
    attempts: int
    error: str


@dataclass(frozen=True)
class Heartbeat:
    received_at: float
    evaluated_at: float | None
    blind: bool


# Delivery priority of a mail (lower goes first); the urgent lane takes 0-1, the bulk lane the
# rest, so a critical mail never waits behind digests.
URGENT_PRIORITIES = (0, 1)
BULK_PRIORITIES = (2, 99)
PRIORITY = {
    ("critical", False): 0,
    ("critical", True): 1,
    ("warning", False): 2,
    ("warning", True): 3,
}


@dataclass
class Entry:
    """One alert in a mail: its current state and the changes it stands for."""

    alert: Alert  # the latest change: what is true now
    ids: list[int]
    received_at: float  # when the first of the changes was received
    changes: list[Alert]  # every change, oldest first
    held: bool  # some changes were held back by the cooldown: the mail tells the history

    @property
    def first_change(self) -> str:
        return event_time_text(self.changes[0])

    @property
    def last_change(self) -> str:
        return event_time_text(self.changes[-1])


@dataclass
class MailPlan:
    kind: str  # critical | digest | resolved
    severity: str
    resolved: bool
    entries: list[Entry] = field(default_factory=list)

    @property
    def priority(self) -> int:
        return PRIORITY[("critical" if self.severity == "critical" else "warning", self.resolved)]


@dataclass
class Plan:
    mails: list[MailPlan] = field(default_factory=list)
    suppressed: dict[str, list[int]] = field(default_factory=dict)  # reason -> alert ids
    held: dict[int, float] = field(default_factory=dict)  # alert id -> when it is due

    def suppress(self, reason: str, alert_id: int) -> None:
        self.suppressed.setdefault(reason, []).append(alert_id)
