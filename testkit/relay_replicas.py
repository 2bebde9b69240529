"""Relay replicas on one PostgreSQL, behind an Alertmanager cluster, for the combined proof test
(test_proof.py) and bench/relay_failover.py.

Real components on loopback: a PostgreSQL server (Debian's binaries), two `dockpulse-relay`
replicas sharing one database, two Alertmanager peers gossiping, each posting every notification
to both replicas (the shipped receivers, one webhook per replica), and an aiosmtpd server with
STARTTLS and login taking the mail (a little slowly, so mails are in flight) and counting every
copy. A burst of critical alerts goes to both peers' API, as Prometheus sends them; mid-burst
the first replica seen holding a claimed mail is killed (kill -9), and halfway one peer is stopped.

    with paced_smtp(work_dir) as (mailbox, smtp):
        replicas, peers = relay_replicas(stack, database, smtp)
        result = burst(database, replicas, peers, mailbox, ["127.0.0.1:9487"])
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import psycopg2
import requests

from testkit.certificates import self_signed
from testkit.helpers import free_port, wait_until
from testkit.local_stack import TEST_RELAY_TIMINGS, LocalStack, Service
from testkit.mail import mail_text, text_of
from testkit.postgres import PostgresServer
from testkit.relay_process import RelayProcess
from testkit.smtp import Mailbox, smtp_env, smtp_server
from testkit.switchboard import alertmanager_cluster

PEER_TIMEOUT = "3s"  # the second peer's wait before it notifies in place of the first
BURST = "replica-burst-"  # the burst's container names: replica-burst-000, -001, ...
CONTAINER = re.compile(rf"^Container:\s+({BURST}\d+)", re.MULTILINE)


class SmtpMail(NamedTuple):
    arrived: float  # time.time() when the sink took it
    text: str  # subject and every text part
    plain: str  # the plain-text part

    def section(self, container: str) -> str:
        """The plain-text section about `container`'s alert ("" when the mail has none): a
        mail may carry several alerts, of other containers and hosts."""
        sections = re.split(r"\n(?=Alert:\s)", self.plain.split("\n-- dockpulse-relay")[0])
        about = re.compile(rf"^Container:\s+{re.escape(container)}$", re.MULTILINE)
        return "\n".join(section for section in sections[1:] if about.search(section))


class PacedMailbox(Mailbox):
    """Takes `delay` seconds over every message, so mails are in flight when a replica dies."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.arrivals: list[float] = []  # one per message in `received`

    async def handle_DATA(self, server, session, envelope) -> str:
        await asyncio.sleep(self.delay)
        reply = await super().handle_DATA(server, session, envelope)
        self.arrivals.append(time.time())
        return reply

    def about(self, *words: str) -> list[SmtpMail]:
        """The mails received so far whose subject or text contains every word, oldest first."""
        mails = [
            SmtpMail(arrived, mail_text(message), text_of(message))
            for arrived, (_, _, message) in zip(
                list(self.arrivals), list(self.received), strict=False
            )
        ]
        return [mail for mail in mails if all(word in mail.text for word in words)]

    def incidents(self) -> Counter[str]:
        """Mails per container of the burst (a mail may carry several alerts)."""
        return Counter(
            container
            for _, _, message in list(self.received)
            for container in CONTAINER.findall(text_of(message))
        )


@dataclass
class Failover:
    incidents: int
    mailed: int  # incidents with at least one mail
    lost: int
    duplicates: int  # mails beyond the first per incident
    claimed_at_kill: int  # mails the killed replica held when it died
    held: set[str]  # the containers whose alerts those mails carried (several a mail)
    duplicates_not_held: int  # duplicates of incidents the killed replica did not hold
    takeover_seconds: float | None  # kill -> the last of those sent by the other replica
    seconds: float  # first alert posted -> every incident mailed

    @property
    def held_incidents(self) -> int:
        return sum(1 for name in self.held if name.startswith(BURST))

    def cells(self) -> list[str]:
        takeover = "-" if self.takeover_seconds is None else f"{self.takeover_seconds:.1f}"
        return [
            f"incidents {self.incidents}",
            f"mailed {self.mailed}",
            f"lost {self.lost}",
            f"duplicates {self.duplicates} ({self.duplicates_not_held} not held by the killed"
            " replica)",
            f"held by the killed replica {self.claimed_at_kill} mails"
            f" ({self.held_incidents} incidents)",
            f"takeover {takeover} s",
            f"all mailed after {self.seconds:.1f} s",
        ]


def query(url: str, sql: str, *parameters: object) -> list[tuple]:
    connection = psycopg2.connect(url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(sql, parameters)
            return cursor.fetchall()
    finally:
        connection.close()


def burst_alert(number: int, starts_at: str, instance: str) -> dict[str, object]:
    container = f"{BURST}{number:03d}"
    return {
        "labels": {
            "alertname": "ContainerDown",
            "severity": "critical",
            "name": container,
            "instance": instance,
            "job": "exporter",
        },
        "annotations": {"summary": f"Container {container} is down on {instance}"},
        "startsAt": starts_at,
    }


def post_alerts(peers: list, alerts: list[dict[str, object]]) -> None:
    """To every running peer, as Prometheus does; a stopped one is skipped."""
    for peer in peers:
        if peer.process.poll() is None:
            with suppress(requests.RequestException):
                requests.post(f"{peer.url}/api/v2/alerts", json=alerts, timeout=5)


def holding(url: str, replicas: list[RelayProcess]) -> tuple[RelayProcess, list[int]] | None:
    """A replica that holds claimed mails it has not finished, and those mails."""
    rows = query(url, "SELECT id, claimed_by FROM mails WHERE state = 'pending'"
                 " AND claimed_by IS NOT NULL")  # fmt: skip
    for replica in replicas:
        held = [row[0] for row in rows if f":{replica.process.pid}:" in row[1]]
        if held:
            return replica, held
    return None


@contextmanager
def paced_smtp(
    work_dir: Path, delay: float = 0.05
) -> Iterator[tuple[PacedMailbox, dict[str, str]]]:
    """The aiosmtpd sink (STARTTLS, login) taking `delay` seconds a mail, and the relay's
    settings to mail to it."""
    mailbox = PacedMailbox(delay)
    certificate = self_signed(work_dir)
    controller = smtp_server(mailbox, certificate)
    try:
        yield mailbox, smtp_env(controller, certificate[0])
    finally:
        controller.stop()


def relay_replicas(
    stack: LocalStack,
    database: str,
    smtp: dict[str, str],
    peer_flags: tuple[str, ...] = (f"--cluster.peer-timeout={PEER_TIMEOUT}",),
    wait: bool = True,
    **caps: str,
) -> tuple[list[RelayProcess], list[Service]]:
    """Two relay replicas on `database` mailing over `smtp` (test timings, no graphs), and two
    Alertmanager peers each posting to both (`wait`, `caps`: see alertmanager_cluster)."""
    env = {
        **TEST_RELAY_TIMINGS,
        **smtp,
        "RELAY_STORE": database,
        "PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",  # nobody: no graph
    }
    replicas = [stack.relay(f"relay-{number}", **env) for number in (1, 2)]
    peers = alertmanager_cluster(
        stack, [replica.url for replica in replicas], 2, peer_flags, wait, **caps
    )
    return replicas, peers


def burst(
    database: str,
    replicas: list[RelayProcess],
    peers: list[Service],
    mailbox: PacedMailbox,
    instances: Sequence[str],
    incidents: int = 200,
    batch: int = 10,
    pause: float = 0.25,
    timeout: float = 120.0,
) -> Failover:
    """`incidents` critical alerts, spread over `instances` (hosts), posted in batches to every
    running peer; a quarter in, the first replica seen holding a claimed mail is killed
    (kill -9); halfway, the first peer is stopped. Waits until every incident is mailed (or
    `timeout`), and 3 s more for late copies; what arrived, counted."""
    starts_at = datetime.now(UTC).isoformat()
    alerts = [
        burst_alert(number, starts_at, instances[number % len(instances)])
        for number in range(incidents)
    ]
    claimed: list[int] = []
    killed_at = 0.0
    started = time.time()
    for first in range(0, incidents, batch):
        post_alerts(peers, alerts[first : first + batch])
        if not killed_at and first >= incidents // 4:
            victim, claimed = wait_until(lambda: holding(database, replicas), 30, 0.005)
            victim.process.kill()  # kill -9 while it holds mail
            killed_at = time.time()
            victim.process.wait()
        if first == (incidents // 2) // batch * batch:
            peers[0].stop()  # halfway: one Alertmanager peer goes away
        time.sleep(pause)
    names = {str(alert["labels"]["name"]) for alert in alerts}  # type: ignore[index]
    with suppress(AssertionError):  # what never arrives is counted below as lost
        wait_until(lambda: names <= set(mailbox.incidents()), timeout, 0.2)
    done = time.time()
    time.sleep(3)  # late copies, if any, still count as duplicates
    sent = query(
        database,
        "SELECT max(sent_at) FROM mails WHERE id = ANY(%s) AND state = 'sent'",
        claimed,
    )[0][0]
    held = {
        row[0]
        for row in query(
            database,
            "SELECT alert::json -> 'labels' ->> 'name' FROM alerts WHERE mail_id = ANY(%s)",
            claimed,
        )
    }
    mailed = mailbox.incidents()
    return Failover(
        incidents=incidents,
        mailed=len(names & set(mailed)),
        lost=len(names - set(mailed)),
        duplicates=sum(count - 1 for count in mailed.values()),
        claimed_at_kill=len(claimed),
        held=held,
        duplicates_not_held=sum(count - 1 for name, count in mailed.items() if name not in held),
        takeover_seconds=None if sent is None else sent - killed_at,
        seconds=done - started,
    )


def relay_failover(work_dir: Path, postgres: PostgresServer, incidents: int = 200) -> Failover:
    """The burst on its own: replicas, peers and the mail sink only (one instance)."""
    database = postgres.create_database()
    with paced_smtp(work_dir) as (mailbox, smtp), LocalStack(work_dir) as stack:
        replicas, peers = relay_replicas(stack, database, smtp)
        return burst(database, replicas, peers, mailbox, ["127.0.0.1:9100"], incidents)
