"""Delivery through SES (sesv2) against moto's server, read back from moto's sent-mail store.

moto cannot throttle or fail with 5xx, so for those a small HTTP proxy in front of moto answers
the first SendEmail calls with SES's own error responses (TooManyRequestsException 429,
ServiceUnavailable 503) and forwards the rest. MessageRejected is moto's real answer for an
unverified sender.
"""

from __future__ import annotations

import email
import email.policy
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

from testkit.chaos_scenarios import forward_post
from testkit.helpers import value, wait_for_samples, wait_until
from tests.relay.payloads import alert, notification

# Not store-sensitive (SES errors): the SQLite store only.
pytestmark = pytest.mark.sqlite_only

SENDER = "alerts@dockpulse.example"
RECIPIENTS = "ops@dockpulse.example,oncall@dockpulse.example"
SEND_PATH = "/v2/email/outbound-emails"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def ses(moto_url: str) -> str:
    """A clean moto with the sender identity verified."""
    requests.post(f"{moto_url}/moto-api/reset", timeout=5)
    ses_client(moto_url).create_email_identity(EmailIdentity=SENDER)
    return moto_url


def ses_client(moto_url: str):
    return boto3.client(
        "sesv2",
        region_name="eu-west-1",
        endpoint_url=moto_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def ses_env(endpoint: str, sender: str = SENDER) -> dict[str, str]:
    return {
        "MAIL_BACKEND": "ses",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "SENDER_EMAIL": sender,
        "RECIPIENT_EMAILS": RECIPIENTS,
        "RETRY_INITIAL_DELAY": "0.2",
    }


def sent_mails(moto_url: str) -> list[email.message.EmailMessage]:
    data = requests.get(f"{moto_url}/moto-api/data.json", timeout=5).json()
    return [
        email.message_from_string(raw["raw_data"], policy=email.policy.default)
        for raw in data["ses"]["RawMessage"]
    ]


class FlakySes:
    """Answers the first SendEmail calls with the given (status, error code), then forwards."""

    def __init__(self, upstream: str, failures: list[tuple[int, str]]) -> None:
        self.failures = list(failures)
        self.calls = 0
        flaky = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == SEND_PATH:
                    flaky.calls += 1
                    if flaky.failures:
                        status, code = flaky.failures.pop(0)
                        payload = f'{{"message": "injected {code}"}}'.encode()
                        self.send_response(status)
                        self.send_header("x-amzn-ErrorType", code)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(payload)))
                        self.end_headers()
                        self.wfile.write(payload)
                        return
                forward_post(self, upstream, body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_critical_alert_is_sent_through_ses(start_relay, ses) -> None:
    relay = start_relay(**ses_env(ses))
    assert relay.post(notification(alert("ContainerDown", "webapp"))).status_code == 200
    mail = wait_until(lambda: sent_mails(ses))[0]
    assert mail["Subject"] == "[CRITICAL] 1 alert: ContainerDown (webapp)"
    assert mail["From"] == SENDER
    assert mail["To"] == "ops@dockpulse.example, oncall@dockpulse.example"
    assert mail.get_content_type() == "multipart/alternative"
    assert "webapp" in mail.get_body(preferencelist=("html",)).get_content()
    # The relay counts a mail once SES has answered, a moment after moto shows it.
    samples = wait_for_samples(
        relay.metrics, lambda s: value(s, "dockpulse_relay_mails_sent_total", backend="ses") == 1
    )
    assert value(samples, "dockpulse_relay_mails_sent_total", backend="ses") == 1
    assert not list((relay.folder / "outbox").glob("*.eml"))


def test_throttling_and_5xx_are_retried_with_backoff(start_relay, ses) -> None:
    flaky = FlakySes(ses, [(429, "TooManyRequestsException"), (503, "ServiceUnavailable")])
    try:
        relay = start_relay(**ses_env(flaky.url))
        relay.post(notification(alert("ContainerDown", "webapp")))
        mails = wait_until(lambda: sent_mails(ses), timeout=20)
        assert len(mails) == 1
        assert flaky.calls == 3
        samples = wait_for_samples(
            relay.metrics,
            lambda s: value(s, "dockpulse_relay_mails_sent_total", backend="ses") == 1,
        )
        assert value(samples, "dockpulse_relay_mail_failures_total", backend="ses") == 2
        assert value(samples, "dockpulse_relay_mails_sent_total", backend="ses") == 1
        assert value(samples, "dockpulse_relay_mails_dead_lettered_total", backend="ses") is None
    finally:
        flaky.close()


def test_an_unverified_sender_keeps_mail_queued_and_says_so_until_fixed(start_relay, ses) -> None:
    """moto answers MessageRejected for an unverified sender, as SES does: every mail would be
    refused, so none is dead-lettered; the relay reports itself blocked and retries slowly."""
    sender = "unverified@dockpulse.example"
    relay = start_relay(**ses_env(ses, sender=sender), RETRY_BLOCKED_DELAY="0.5s")
    relay.post(notification(alert("ContainerDown", "webapp")))
    samples = wait_for_samples(
        relay.metrics,
        lambda s: (
            value(s, "dockpulse_relay_mail_failures_total", reason="account", backend="ses")
            and value(s, "dockpulse_relay_backend_blocked", backend="ses") == 1
        ),
    )
    assert value(samples, "dockpulse_relay_backend_healthy", backend="ses") == 0
    assert value(samples, "dockpulse_relay_mails_dead_lettered_total", backend="ses") is None
    assert value(samples, "dockpulse_relay_queue_depth", queue="pending_mails") == 1
    assert sent_mails(ses) == []
    assert "MessageRejected" in relay.output()

    ses_client(ses).create_email_identity(EmailIdentity=sender)  # the operator verifies it
    mail = wait_until(lambda: sent_mails(ses), timeout=20)[0]
    assert mail["Subject"] == "[CRITICAL] 1 alert: ContainerDown (webapp)"
    samples = wait_for_samples(
        relay.metrics, lambda s: value(s, "dockpulse_relay_backend_blocked", backend="ses") == 0
    )
    assert value(samples, "dockpulse_relay_backend_healthy", backend="ses") == 1
