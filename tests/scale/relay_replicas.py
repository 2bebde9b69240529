"""Relay replicas on one PostgreSQL, behind an Alertmanager cluster, for the replicas test and
bench/relay_failover.py.

Real components on loopback: a PostgreSQL server (Debian's binaries), two `dockpulse-relay`
replicas sharing one database, two Alertmanager peers gossiping, each posting every notification
to both replicas (the shipped receivers, one webhook per replica), and an aiosmtpd server with
STARTTLS and login taking the mail (a little slowly, so mails are in flight) and counting every
copy. A burst of critical alerts goes to both peers' API, as Prometheus sends them; mid-burst
the first replica seen holding a claimed mail is killed (kill -9), and halfway one peer is stopped.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import requests

from tests.helpers import free_port, wait_until
from tests.relay.smtp_support import Mailbox, make_certificate, smtp_env, smtp_server
from tests.scale.switchboard import alertmanager_cluster
from tests.support.local_stack import TEST_RELAY_TIMINGS, LocalStack, Relay
from tests.support.postgres import PostgresServer

PEER_TIMEOUT = "3s"  # the second peer's wait before it notifies in place of the first
CONTAINER = re.compile(r"^Container:\s+(replica-burst-\d+)", re.MULTILINE)


class PacedMailbox(Mailbox):
    """Takes `delay` seconds over every message, so mails are in flight when a replica dies."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def handle_DATA(self, server, session, envelope) -> str:
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)

    def incidents(self) -> Counter[str]:
        """Mails per container of the burst (a mail may carry several alerts)."""
        return Counter(
            container
            for _, _, message in list(self.received)
            for container in CONTAINER.findall(
                message.get_body(preferencelist=("plain",)).get_content()
            )
        )


@dataclass
class Failover:
    incidents: int
    mailed: int  # incidents with at least one mail
    lost: int
    duplicates: int  # mails beyond the first per incident
    claimed_at_kill: int  # mails the killed replica held when it died
    takeover_seconds: float | None  # kill -> the last of those sent by the other replica
    seconds: float  # first alert posted -> every incident mailed

    def cells(self) -> list[str]:
        takeover = "-" if self.takeover_seconds is None else f"{self.takeover_seconds:.1f}"
        return [
            f"incidents {self.incidents}",
            f"mailed {self.mailed}",
            f"lost {self.lost}",
            f"duplicates {self.duplicates}",
            f"held by the killed replica {self.claimed_at_kill}",
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


def burst_alert(number: int, starts_at: str) -> dict[str, object]:
    container = f"replica-burst-{number:03d}"
    return {
        "labels": {
            "alertname": "ContainerDown",
            "severity": "critical",
            "name": container,
            "instance": "127.0.0.1:9100",
            "job": "exporter",
        },
        "annotations": {"summary": f"Container {container} is down"},
        "startsAt": starts_at,
    }


def post_alerts(peers: list, alerts: list[dict[str, object]]) -> None:
    """To every running peer, as Prometheus does; a stopped one is skipped."""
    for peer in peers:
        if peer.process.poll() is None:
            with suppress(requests.RequestException):
                requests.post(f"{peer.url}/api/v2/alerts", json=alerts, timeout=5)


def holding(url: str, replicas: list[Relay]) -> tuple[Relay, list[int]] | None:
    """A replica that holds claimed mails it has not finished, and those mails."""
    rows = query(url, "SELECT id, claimed_by FROM mails WHERE state = 'pending'"
                 " AND claimed_by IS NOT NULL")  # fmt: skip
    for replica in replicas:
        held = [row[0] for row in rows if f":{replica.process.pid}:" in row[1]]
        if held:
            return replica, held
    return None


def relay_failover(
    work_dir: Path,
    postgres: PostgresServer,
    incidents: int = 200,
    batch: int = 10,
    pause: float = 0.25,
    smtp_delay: float = 0.05,
    timeout: float = 120.0,
) -> Failover:
    """The burst with one replica killed and one peer stopped; what arrived, counted."""
    database = postgres.create_database()
    mailbox = PacedMailbox(smtp_delay)
    certificate = make_certificate(work_dir)
    controller = smtp_server(mailbox, certificate)
    try:
        with LocalStack(work_dir) as stack:
            env = {
                **TEST_RELAY_TIMINGS,
                **smtp_env(controller, certificate[0]),
                "RELAY_STORE": database,
                "PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",  # nobody: no chart
            }
            replicas = [stack.relay(f"relay-{number}", **env) for number in (1, 2)]
            peers = alertmanager_cluster(
                stack,
                [replica.url for replica in replicas],
                2,
                (f"--cluster.peer-timeout={PEER_TIMEOUT}",),
            )
            starts_at = datetime.now(UTC).isoformat()
            alerts = [burst_alert(number, starts_at) for number in range(incidents)]
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
    finally:
        controller.stop()
    mailed = mailbox.incidents()
    return Failover(
        incidents=incidents,
        mailed=len(names & set(mailed)),
        lost=len(names - set(mailed)),
        duplicates=sum(count - 1 for count in mailed.values()),
        claimed_at_kill=len(claimed),
        takeover_seconds=None if sent is None else sent - killed_at,
        seconds=done - started,
    )
