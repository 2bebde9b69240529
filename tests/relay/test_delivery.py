"""Delivery: criticals first, every attempt bounded in time, failures sorted as AWS and SMTP
document them (only a message's own refusal dead-letters it), and the fallback backend."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import requests

from dockpulse_relay.deliver.backends import (
    AccountError,
    PermanentError,
    TransientError,
    classify_ses,
)
from testkit.chaos_scenarios import moto_with_iam as moto_in_iam_mode
from testkit.helpers import free_port, value, wait_for_samples, wait_until
from testkit.smtp import Mailbox, SlowMailbox, smtp_env, smtp_server
from tests.relay.payloads import alert, notification

SENDER = "alerts@dockpulse.example"


@pytest.mark.parametrize(
    ("code", "status", "message", "kind"),
    [
        ("TooManyRequestsException", 429, "Too many requests", TransientError),
        ("LimitExceededException", 400, "Maximum sending rate exceeded", TransientError),
        ("InternalFailure", 500, "", TransientError),
        ("ServiceUnavailable", 503, "", TransientError),
        ("AccessDeniedException", 403, "not authorized to perform ses:SendEmail", AccountError),
        ("ExpiredToken", 400, "The security token included in the request is expired",
         AccountError),
        ("UnrecognizedClientException", 400, "", AccountError),
        ("InvalidClientTokenId", 403, "", AccountError),
        ("SignatureDoesNotMatch", 403, "", AccountError),
        ("AccountSuspendedException", 400, "", AccountError),
        ("SendingPausedException", 400, "", AccountError),
        ("MessageRejected", 400, "Email address is not verified. The following identities failed "
         "the check in region EU-WEST-1: alerts@example.com", AccountError),
        ("MessageRejected", 400, "Message length is more than 10485760 bytes long", PermanentError),
        ("BadRequestException", 400, "Invalid header", PermanentError),
    ],
)  # fmt: skip
def test_ses_errors_are_sorted_as_aws_documents_them(code, status, message, kind) -> None:
    assert classify_ses(code, status, message) is kind


def test_a_new_critical_is_not_stuck_behind_slow_failing_digests(start_relay, certificate) -> None:
    """Every digest takes the SMTP server 2 s and then a 451; the critical goes past them."""
    mailbox = SlowMailbox(delay=2.0, digest_reply="451 4.3.0 busy, try later")
    controller = smtp_server(mailbox, certificate)
    try:
        relay = start_relay(
            **smtp_env(controller, certificate[0]), BUFFER_TIMEOUT="0.2", DIGEST_MAX_ALERTS="1"
        )
        for number in range(6):
            relay.post(notification(alert("HighCpu", f"worker{number}", "warning")))
        wait_until(lambda: mailbox.digest_attempts >= 1)
        relay.post(notification(alert("ContainerDown", "webapp")))
        _, _, message = wait_until(lambda: mailbox.received, timeout=10)[0]
        assert message["Subject"] == "[CRITICAL] 1 alert: ContainerDown (webapp)"
        # Counted sent a moment after the server has it; the six digests still wait.
        samples = wait_for_samples(
            relay.metrics,
            lambda s: value(s, "dockpulse_relay_mails_sent_total", kind="critical") == 1,
        )
        assert value(samples, "dockpulse_relay_mails_sent_total", kind="digest") is None
        assert value(samples, "dockpulse_relay_queue_depth", queue="pending_mails") == 6
    finally:
        controller.stop()


class HangingMailbox(Mailbox):
    async def handle_DATA(self, server, session, envelope) -> str:
        await asyncio.sleep(30)
        return "250 OK"


def test_a_delivery_attempt_that_hangs_is_cut_off(start_relay, certificate) -> None:
    controller = smtp_server(HangingMailbox(), certificate)
    try:
        relay = start_relay(**smtp_env(controller, certificate[0]), DELIVERY_TIMEOUT="1s")
        relay.post(notification(alert("ContainerDown", "webapp")))
        samples = wait_for_samples(
            relay.metrics,
            lambda s: value(s, "dockpulse_relay_mail_failures_total", reason="transient"),
            timeout=15,
        )
        assert value(samples, "dockpulse_relay_queue_depth", queue="pending_mails") == 1
        assert "timed out" in relay.output()
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def moto_with_iam(tmp_path_factory) -> Iterator[tuple[str, dict[str, str]]]:
    """A moto server that checks credentials (moto's IAM mode): an IAM user with a key allowed
    to send, and a verified sender. Yields (url, its key)."""
    with moto_in_iam_mode(tmp_path_factory.mktemp("moto")) as server:
        yield server


def moto_sent(url: str) -> list[str]:
    data = requests.get(f"{url}/moto-api/data.json", timeout=5).json()
    return [raw["raw_data"] for raw in data["ses"]["RawMessage"]]


def test_refused_credentials_keep_mail_queued_until_fixed(start_relay, moto_with_iam) -> None:
    url, credentials = moto_with_iam
    env = {
        "MAIL_BACKEND": "ses",
        "AWS_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL": url,
        "SENDER_EMAIL": SENDER,
        "RECIPIENT_EMAILS": "ops@dockpulse.example",
        "RETRY_BLOCKED_DELAY": "0.5s",
    }
    sent_before = len(moto_sent(url))
    relay = start_relay(
        **env, AWS_ACCESS_KEY_ID=credentials["AWS_ACCESS_KEY_ID"], AWS_SECRET_ACCESS_KEY="rotated"
    )
    relay.post(notification(alert("ContainerDown", "webapp")))
    samples = wait_for_samples(
        relay.metrics,
        lambda s: (value(s, "dockpulse_relay_mail_failures_total", reason="account") or 0) >= 2,
    )
    assert value(samples, "dockpulse_relay_backend_blocked", backend="ses") == 1
    assert value(samples, "dockpulse_relay_queue_depth", queue="pending_mails") == 1
    assert value(samples, "dockpulse_relay_dead_letters") == 0
    assert "SignatureDoesNotMatch" in relay.output()

    relay.restart(**credentials)  # the operator puts the right secret in and restarts
    wait_until(lambda: len(moto_sent(url)) == sent_before + 1)
    assert "ContainerDown (webapp)" in moto_sent(url)[-1]


def test_the_fallback_backend_takes_over_when_ses_keeps_failing(start_relay, smtp, certificate):
    mailbox, controller = smtp()
    relay = start_relay(
        **{
            **smtp_env(controller, certificate[0]),
            "MAIL_BACKEND": "ses",
        },
        AWS_REGION="eu-west-1",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}",  # nothing listens: unreachable
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        MAIL_FALLBACK_BACKEND="smtp",
        FALLBACK_AFTER="1s",
    )
    relay.post(notification(alert("ContainerDown", "webapp")))
    _, _, message = wait_until(lambda: mailbox.received, timeout=20)[0]
    assert message["Subject"] == "[CRITICAL] 1 alert: ContainerDown (webapp)"
    samples = wait_for_samples(
        relay.metrics, lambda s: value(s, "dockpulse_relay_mails_sent_total", backend="smtp")
    )
    assert value(samples, "dockpulse_relay_mail_failures_total", backend="ses") >= 1
    assert value(samples, "dockpulse_relay_backend_healthy", backend="ses") == 0
