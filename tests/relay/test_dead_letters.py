"""Nothing one alert carries can stop other mail: what cannot be composed, or what the backend
refuses for that message alone, is dead-lettered with its reason while the rest goes out; dead
letters are counted and can be listed and re-queued with `dockpulse-relay dead-letters`."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

import dockpulse_relay.compose.composer as composer
from dockpulse_relay.app import Dispatcher
from dockpulse_relay.config import RelayConfig
from dockpulse_relay.deliver.backends import OutboxBackend
from dockpulse_relay.intake.payload import parse_notification
from dockpulse_relay.metrics import RelayMetrics
from dockpulse_relay.store.open import open_store
from testkit.helpers import value, wait_until
from testkit.mail import read_outbox
from testkit.relay_process import RELAY
from testkit.smtp import Mailbox, smtp_env, smtp_server
from tests.relay.payloads import alert, notification


def cli(store: Path | str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RELAY), "dead-letters", *args],
        env={**os.environ, "RELAY_STORE": str(store)},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_an_alert_that_cannot_be_composed_is_dead_lettered_alone(tmp_path, monkeypatch) -> None:
    """Composing is made to fail for one container (sanitising leaves no known input that
    breaks it; the property tests look for one): the only stand-in in this test."""
    real_compose = composer.compose

    def compose_or_fail(plan, *args, **kwargs):
        if any(entry.alert.container == "poison" for entry in plan.entries):
            raise ValueError("cannot encode this one")
        return real_compose(plan, *args, **kwargs)

    monkeypatch.setattr(composer, "compose", compose_or_fail)
    config = RelayConfig(store=tmp_path / "relay.db", outbox_dir=tmp_path / "outbox")
    store = open_store(config.store)
    metrics = RelayMetrics(store.depth)
    dispatcher = Dispatcher(store, OutboxBackend(config.outbox_dir), config, metrics)
    body = notification(*(alert("ContainerDown", name) for name in ("web", "poison", "db")))
    store.record(parse_notification(__import__("json").dumps(body).encode()), time.time())

    dispatcher.run_once(time.time())
    mails = read_outbox(config.outbox_dir)
    assert [mail.subject for mail in mails] == [
        "[CRITICAL] 1 alert: ContainerDown (web)",
        "[CRITICAL] 1 alert: ContainerDown (db)",
    ]
    assert store.depth()["dead_letters"] == 1
    assert metrics.dead_lettered.labels("compose")._value.get() == 1

    listed = cli(config.store, "list")
    assert listed.returncode == 0, listed.stderr
    (line,) = listed.stdout.splitlines()
    assert "cannot compose: ValueError('cannot encode this one')" in line
    letter_id = line.split("\t")[0]
    assert cli(config.store, "requeue", "999").returncode == 2
    missing = cli(tmp_path / "elsewhere.db", "list")
    assert missing.returncode == 2
    assert missing.stderr.strip().endswith("elsewhere.db (RELAY_STORE)")
    assert not (tmp_path / "elsewhere.db").exists()
    requeued = cli(config.store, "requeue", letter_id)
    assert requeued.returncode == 0, requeued.stderr
    assert "re-queued 1" in requeued.stdout

    monkeypatch.setattr(composer, "compose", real_compose)  # the fix is deployed
    dispatcher.run_once(time.time())
    assert store.depth()["dead_letters"] == 0
    assert "ContainerDown (poison)" in read_outbox(config.outbox_dir)[-1].subject


class PoisonRefusingMailbox(Mailbox):
    """A real SMTP server that refuses messages mentioning "poison" (554 at DATA) only."""

    async def handle_DATA(self, server, session, envelope) -> str:
        if b"poison" in envelope.content:
            return "554 5.6.0 message content rejected"
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def refusing_smtp(certificate):
    mailbox = PoisonRefusingMailbox()
    controller = smtp_server(mailbox, certificate)
    yield mailbox, controller
    controller.stop()


def test_a_message_the_server_refuses_is_dead_lettered_and_the_next_flows(
    start_relay, refusing_smtp, certificate
) -> None:
    mailbox, controller = refusing_smtp
    relay = start_relay(**smtp_env(controller, certificate[0]))
    relay.post(notification(alert("ContainerDown", "poison")))
    wait_until(
        lambda: value(relay.metrics(), "dockpulse_relay_mails_dead_lettered_total", backend="smtp")
    )
    relay.post(notification(alert("ContainerDown", "webapp")))
    _, _, message = wait_until(lambda: mailbox.received)[0]
    assert message["Subject"] == "[CRITICAL] 1 alert: ContainerDown (webapp)"
    samples = relay.metrics()
    assert value(samples, "dockpulse_relay_dead_letters") == 1
    assert value(samples, "dockpulse_relay_backend_healthy", backend="smtp") == 1

    store = relay.env["RELAY_STORE"]
    listed = cli(store, "list")
    assert "SMTP 554" in listed.stdout and "ContainerDown (poison)" in listed.stdout
    assert cli(store, "requeue", "--all").stdout.startswith("re-queued 1")
    wait_until(lambda: value(relay.metrics(), "dockpulse_relay_mail_failures_total") is None
               and value(relay.metrics(), "dockpulse_relay_mails_dead_lettered_total",
                         backend="smtp") == 2)  # fmt: skip
    assert len(mailbox.received) == 1
