"""Chaos scenarios for the alert path, each bounded in time, each ending in one `Row`:
incidents, mailed, lost, duplicated, time to first mail.

Shared by `bench/chaos.py` (full sizes, shipped timings where they are the point) and
tests/relay/test_chaos.py (quick sizes). Real components throughout: the relay as a process,
moto's SES server (ThreadedMotoServer, or `moto_server` in its IAM mode for credentials),
aiosmtpd, the real Prometheus and Alertmanager binaries (LocalStack). Where a scenario posts
webhooks itself, the poster behaves like Alertmanager: it retries until the relay answers 2xx.

Counting: every alert carries a fingerprint; a mail lists each alert's fingerprint, status and
start. An incident is mailed when its fingerprint appears in a mail; a duplicate is the same
(fingerprint, status, start) in a second mail (the at-least-once window: sent, then killed
before it was marked sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import requests
from aiosmtpd.controller import Controller
from moto.server import ThreadedMotoServer

from testkit.helpers import free_port
from testkit.local_stack import PROMETHEUS_DIR, LocalStack, stop_process
from testkit.mail import mail_text, parse
from testkit.relay_process import TOKEN, RelayProcess

SENDER = "alerts@dockpulse.example"
FINGERPRINT = re.compile(r"^Fingerprint:\s+(\S+)\s*$", re.MULTILINE)
ENTRY_FIELD = re.compile(r"^(Status|Started|Fingerprint):\s+(\S+)\s*$", re.MULTILINE)


@dataclass
class Row:
    scenario: str
    incidents: int
    mailed: int
    lost: int
    duplicated: int
    first_mail_seconds: float | None
    note: str = ""

    def cells(self) -> list[str]:
        first = "-" if self.first_mail_seconds is None else f"{self.first_mail_seconds:.1f}"
        return [
            self.scenario,
            str(self.incidents),
            str(self.mailed),
            str(self.lost),
            str(self.duplicated),
            first,
            self.note,
        ]


@dataclass
class Received:
    """A mail as some server got it: when, and its decoded text."""

    at: float  # time.time()
    subject: str
    text: str


@dataclass
class Scale:
    """How big and how long: `quick()` for make test, `full()` for the benchmark."""

    burst: int = 100
    flaps: int = 10
    cooldown: float = 10.0
    ses_outage: float = 60.0
    blocked: float = 10.0
    disk_full: float = 10.0
    shipped_heartbeat: bool = True  # Prometheus killed with the shipped timings (minutes)
    timeout: float = 300.0

    @classmethod
    def quick(cls) -> Scale:
        return cls(
            burst=30,
            flaps=10,
            cooldown=3.0,
            ses_outage=3.0,
            blocked=2.0,
            disk_full=2.0,
            shipped_heartbeat=False,
            timeout=60.0,
        )


# --- alerts and posting, as Alertmanager does it ---------------------------------------------


def webhook_alert(
    name: str,
    container: str,
    severity: str = "critical",
    status: str = "firing",
    minute: int = 0,
    **annotations: str,
) -> dict[str, Any]:
    fingerprint = hashlib.sha1(f"{name}/{container}".encode("utf-8", "replace")).hexdigest()[:16]
    starts = f"2024-05-01T{10 + minute // 60:02d}:{minute % 60:02d}:00Z"
    ends = f"2024-05-01T{10 + (minute + 1) // 60:02d}:{(minute + 1) % 60:02d}:00Z"
    return {
        "status": status,
        "labels": {"alertname": name, "severity": severity, "name": container},
        "annotations": {"summary": f"{name} on {container}", **annotations},
        "startsAt": starts,
        "endsAt": ends if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
        "fingerprint": fingerprint,
    }


def webhook(*alerts: dict[str, Any]) -> bytes:
    firing = any(item["status"] == "firing" for item in alerts)
    return json.dumps(
        {
            "version": "4",
            "status": "firing" if firing else "resolved",
            "receiver": "relay",
            "groupKey": "{}",
            "alerts": list(alerts),
        }
    ).encode()


def post_until_stored(url: str, body: bytes, deadline: float) -> int:
    """POST like Alertmanager: retry until 2xx (connection refused, 5xx); the attempts made."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    attempts = 0
    while time.monotonic() < deadline:
        attempts += 1
        with contextlib.suppress(requests.RequestException):
            if requests.post(f"{url}/webhook", data=body, headers=headers, timeout=5).ok:
                return attempts
        time.sleep(0.2)
    raise TimeoutError(f"the relay at {url} never stored a notification")


# --- counting mails ----------------------------------------------------------------------------


def entries(mail: Received) -> list[tuple[str, str, str]]:
    """(fingerprint, status, started) of every alert a mail lists."""
    found, current = [], {}
    for name, field_value in ENTRY_FIELD.findall(mail.text):
        current[name] = field_value
        if name == "Fingerprint":
            found.append((field_value, current.get("Status", ""), current.get("Started", "")))
            current = {}
    return found


def count(
    scenario: str,
    expected: set[str],
    mails: list[Received],
    started: float,
    note: str = "",
) -> Row:
    mailed = {fingerprint for mail in mails for fingerprint, _, _ in entries(mail)}
    keys = Counter(key for mail in mails for key in set(entries(mail)))
    first = min((mail.at for mail in mails), default=None)
    return Row(
        scenario=scenario,
        incidents=len(expected),
        mailed=len(expected & mailed),
        lost=len(expected - mailed),
        duplicated=sum(times - 1 for key, times in keys.items() if key[0] in expected),
        first_mail_seconds=None if first is None else max(first - started, 0.0),
        note=note,
    )


def wait_for(check: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException, OSError):
            if check():
                return True
        time.sleep(interval)
    return False


def outbox_mails(outbox: Path) -> list[Received]:
    mails = []
    for path in outbox.glob("*.eml") if outbox.is_dir() else []:
        message = parse(path.read_bytes())
        mails.append(Received(path.stat().st_mtime, str(message["Subject"]), mail_text(message)))
    return sorted(mails, key=lambda mail: mail.at)


def fingerprints_of(alerts: list[dict[str, Any]]) -> set[str]:
    return {alert["fingerprint"] for alert in alerts}


class Inbox:
    """A plain aiosmtpd server; `delay` seconds per message (a relay killed mid-send)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.mails: list[Received] = []
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd hook
        if self.delay:
            await asyncio.sleep(self.delay)
        message = parse(envelope.content)
        self.mails.append(Received(time.time(), str(message["Subject"]), mail_text(message)))
        return "250 OK"

    def __enter__(self) -> Inbox:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    def env(self) -> dict[str, str]:
        return {
            "MAIL_BACKEND": "smtp",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.port),
            "SMTP_STARTTLS": "false",
            "SENDER_EMAIL": SENDER,
            "RECIPIENT_EMAILS": "ops@dockpulse.example",
        }


@contextlib.contextmanager
def relay_process(folder: Path, **env: str) -> Iterator[RelayProcess]:
    folder.mkdir(parents=True, exist_ok=True)
    relay = RelayProcess(
        folder,
        {"CHECK_INTERVAL": "0.2", "BUFFER_TIMEOUT": "1", "RETRY_INITIAL_DELAY": "0.5", **env},
    )
    try:
        yield relay.start()
    finally:
        relay.stop()


# --- SES: moto behind a gate that can be closed (unreachable) --------------------------------


def forward_post(handler: http.server.BaseHTTPRequestHandler, upstream: str, body: bytes) -> None:
    """Pass a POST on to `upstream` (moto) and its answer back, AWS error type included."""
    headers = {k: v for k, v in handler.headers.items() if k.lower() != "host"}
    reply = requests.post(upstream + handler.path, data=body, headers=headers, timeout=10)
    handler.send_response(reply.status_code)
    for name in ("Content-Type", "x-amzn-ErrorType"):
        if name in reply.headers:
            handler.send_header(name, reply.headers[name])
    handler.send_header("Content-Length", str(len(reply.content)))
    handler.end_headers()
    handler.wfile.write(reply.content)


class SesGate:
    """An HTTP forwarder to moto on a fixed port; `close()` makes SES unreachable (connection
    refused), `open()` brings it back."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.server: http.server.ThreadingHTTPServer | None = None
        self.open()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def open(self) -> None:
        upstream = self.upstream

        class Forward(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                forward_post(self, upstream, body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Forward)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class MotoSent:
    """The mails moto's SES has accepted, each stamped when first seen (polled)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: dict[int, Received] = {}

    def poll(self) -> list[Received]:
        data = requests.get(f"{self.url}/moto-api/data.json", timeout=5).json()
        for number, raw in enumerate(data.get("ses", {}).get("RawMessage", [])):
            if number not in self.seen:
                message = email.message_from_string(raw["raw_data"], policy=email.policy.default)
                self.seen[number] = Received(
                    time.time(), str(message["Subject"]), mail_text(message)
                )
        return list(self.seen.values())


def ses_env(endpoint: str, **credentials: str) -> dict[str, str]:
    return {
        "MAIL_BACKEND": "ses",
        "AWS_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "SENDER_EMAIL": SENDER,
        "RECIPIENT_EMAILS": "ops@dockpulse.example",
        **credentials,
    }


@contextlib.contextmanager
def moto_ses() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        boto3.client(
            "sesv2",
            region_name="eu-west-1",
            endpoint_url=url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_email_identity(EmailIdentity=SENDER)
        yield url
    finally:
        server.stop()


@contextlib.contextmanager
def moto_with_iam(folder: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """`moto_server` in its IAM mode (INITIAL_NO_AUTH_ACTION_COUNT): credentials are checked.
    Yields its URL and an access key allowed to send from the verified SENDER."""
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "moto.log").open("wb") as log:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("moto_server")),
                "-H",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(f"{url}/moto-api/", timeout=2).ok, 30)
        where = {"region_name": "eu-west-1", "endpoint_url": url}
        iam = boto3.client("iam", aws_access_key_id="a", aws_secret_access_key="a", **where)
        iam.create_user(UserName="relay")
        iam.put_user_policy(
            UserName="relay",
            PolicyName="send",
            PolicyDocument='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",'
            ' "Action": "ses:*", "Resource": "*"}]}',
        )
        key = iam.create_access_key(UserName="relay")["AccessKey"]
        credentials = {
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        }
        boto3.client(
            "sesv2",
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
            **where,
        ).create_email_identity(EmailIdentity=SENDER)
        yield url, credentials
    finally:
        stop_process(process)


# --- the scenarios ---------------------------------------------------------------------------


def flapping(work: Path, scale: Scale) -> Row:
    """Down and up `flaps` times inside the cooldown, then it stays down."""
    with relay_process(work / "flapping", ALERT_COOLDOWN=f"{scale.cooldown}s") as relay:
        deadline = time.monotonic() + scale.timeout
        started = time.time()
        for minute in range(0, 2 * scale.flaps + 2, 2):
            post_until_stored(
                relay.url, webhook(webhook_alert("ContainerDown", "web", minute=minute)), deadline
            )
            resolved = webhook_alert("ContainerDown", "web", status="resolved", minute=minute)
            post_until_stored(relay.url, webhook(resolved), deadline)
        final = webhook_alert("ContainerDown", "web", minute=2 * scale.flaps + 10)
        post_until_stored(relay.url, webhook(final), deadline)
        stays_down = time.time()
        outbox = relay.folder / "outbox"
        wait_for(
            lambda: ", down now;" in (outbox_mails(outbox) or [Received(0, "", "")])[-1].text,
            scale.cooldown + 30,
        )
        mails = outbox_mails(outbox)
    last = mails[-1] if mails else None
    told = last is not None and ", down now;" in last.text
    note = (
        f"{len(mails)} mails; last says down now {last.at - stays_down:.1f}s after it "
        f"stayed down (cooldown {scale.cooldown:.0f}s)"
        if told and last
        else f"{len(mails)} mails; the last does not say it is down"
    )
    return Row(
        "flapping container",
        1,
        int(told),
        int(not told),
        0,
        mails[0].at - started if mails else None,
        note,
    )


def kill_9_mid_burst(work: Path, scale: Scale) -> Row:
    """`burst` critical alerts; the relay is killed -9 halfway while it is sending."""
    alerts = [webhook_alert("ContainerDown", f"app{n}") for n in range(scale.burst)]
    with Inbox(delay=0.05) as inbox, relay_process(work / "kill9", **inbox.env()) as relay:
        deadline = time.monotonic() + scale.timeout
        started = time.time()
        for number, item in enumerate(alerts):
            if number == len(alerts) // 2:
                wait_for(lambda: inbox.mails, 10, 0.01)  # it is sending now
                relay.restart()  # kill -9, then start again on the same store
            post_until_stored(relay.url, webhook(item), deadline)
        wait_for(
            lambda: fingerprints_of(alerts) <= {e[0] for m in inbox.mails for e in entries(m)}, 60
        )
        time.sleep(1)
    return count(
        f"relay kill -9 mid-burst of {scale.burst}",
        fingerprints_of(alerts),
        inbox.mails,
        started,
        "duplicates: sent, not yet marked sent (at least once)",
    )


def ses_unreachable(work: Path, scale: Scale) -> Row:
    alerts = [webhook_alert("ContainerDown", f"ses{n}") for n in range(10)]
    with moto_ses() as moto:
        gate = SesGate(moto)
        sent = MotoSent(moto)
        with relay_process(work / "ses-down", **ses_env(gate.url), RETRY_MAX_DELAY="15s") as relay:
            deadline = time.monotonic() + scale.timeout + scale.ses_outage
            gate.close()
            started = time.time()
            for item in alerts:
                post_until_stored(relay.url, webhook(item), deadline)
                time.sleep(scale.ses_outage / len(alerts))
            reopened = time.time()
            gate.open()
            wait_for(
                lambda: fingerprints_of(alerts) <= {e[0] for m in sent.poll() for e in entries(m)},
                120,
            )
            gate.close()
        drained = max((mail.at for mail in sent.seen.values()), default=reopened) - reopened
    return count(
        f"SES unreachable {scale.ses_outage:.0f}s, then back",
        fingerprints_of(alerts),
        list(sent.seen.values()),
        started,
        f"all out {drained:.1f}s after SES came back (RETRY_MAX_DELAY 15s)",
    )


def ses_credentials(work: Path, scale: Scale) -> Row:
    alerts = [webhook_alert("ContainerDown", f"cred{n}") for n in range(10)]
    with moto_with_iam(work / "moto-iam") as (moto, credentials):
        sent = MotoSent(moto)
        sent.poll()
        before = set(sent.seen)
        wrong = {**credentials, "AWS_SECRET_ACCESS_KEY": "rotated-away"}
        env = {**ses_env(moto, **wrong), "RETRY_BLOCKED_DELAY": "1s"}
        with relay_process(work / "ses-credentials", **env) as relay:
            deadline = time.monotonic() + scale.timeout
            started = time.time()
            for item in alerts:
                post_until_stored(relay.url, webhook(item), deadline)
            time.sleep(scale.blocked)
            blocked = (
                'dockpulse_relay_backend_blocked{backend="ses"} 1.0'
                in requests.get(f"{relay.url}/metrics", timeout=5).text
            )
            relay.restart(**credentials)  # fixed: the right secret, relay restarted
            wait_for(
                lambda: fingerprints_of(alerts) <= {e[0] for m in sent.poll() for e in entries(m)},
                60,
            )
        mails = [mail for number, mail in sent.seen.items() if number not in before]
    return count(
        "SES refusing credentials, then fixed",
        fingerprints_of(alerts),
        mails,
        started,
        f"blocked metric while refused: {blocked}; nothing dead-lettered",
    )


def alertmanager_restarted(work: Path, scale: Scale) -> Row:
    """Alerts posted to the real Alertmanager as Prometheus does (re-sent every second); it is
    restarted halfway (same port and storage)."""
    names = [f"am{n}" for n in range(20)]
    (work / "am-restart").mkdir(parents=True, exist_ok=True)
    with LocalStack(work / "am-restart") as stack:
        relay = stack.relay(CHECK_INTERVAL="0.2", BUFFER_TIMEOUT="1")
        caps = {"group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h"}
        alertmanager = stack.alertmanager(relay.url, **caps)
        port = alertmanager.port
        started = time.time()

        def push(active: list[str]) -> None:
            now = time.time()
            alerts = [
                {
                    "labels": {"alertname": "ContainerDown", "severity": "critical", "name": name},
                    "annotations": {"summary": f"{name} down"},
                    "startsAt": "2024-05-01T10:00:00Z",
                    "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 60)),
                }
                for name in active
            ]
            with contextlib.suppress(requests.RequestException):
                requests.post(f"http://127.0.0.1:{port}/api/v2/alerts", json=alerts, timeout=5)

        for number in range(len(names) // 2):
            push(names[: number + 1])
            time.sleep(0.1)
        alertmanager.stop()
        push(names[: len(names) // 2])  # refused: Alertmanager is down; Prometheus re-sends
        stack.alertmanager(relay.url, port=port, **caps)
        for number in range(len(names) // 2, len(names)):
            push(names[: number + 1])
            time.sleep(0.1)

        def all_mailed() -> bool:
            push(names)
            text = " ".join(mail.text for mail in outbox_mails(relay.outbox))
            return all(f"Container:   {name}\n" in text.replace("\r", "") for name in names)

        wait_for(all_mailed, 60, 1.0)
        mails = outbox_mails(relay.outbox)
    # Alertmanager computes the fingerprints: count by container name.
    mailed = Counter(
        re.findall(
            r"^Container:\s+(am\d+)\s*$",
            "\n".join(mail.text.replace("\r", "") for mail in mails),
            re.MULTILINE,
        )
    )
    return Row(
        "Alertmanager restarted",
        len(names),
        sum(1 for n in names if mailed[n]),
        sum(1 for n in names if not mailed[n]),
        sum(times - 1 for times in mailed.values()),
        min((m.at for m in mails), default=started) - started,
        "through the real Alertmanager",
    )


def prometheus_killed(work: Path, scale: Scale) -> Row:
    """The dead man's switch on the real binaries. `shipped_heartbeat`: Prometheus' default
    resend delay and evaluation every 5 s, Alertmanager's shipped heartbeat route, the relay's
    default HEARTBEAT_TIMEOUT (2m); otherwise everything in seconds."""
    (work / "prometheus-killed").mkdir(parents=True, exist_ok=True)
    with LocalStack(work / "prometheus-killed") as stack:
        if scale.shipped_heartbeat:
            relay = stack.relay()
            alertmanager = stack.alertmanager(relay.url)
            interval, flags = "5s", ()
        else:
            relay = stack.relay(HEARTBEAT_TIMEOUT="5s", CHECK_INTERVAL="0.2")
            caps = {"group_wait": "0s", "group_interval": "1s", "repeat_interval": "1s"}
            alertmanager = stack.alertmanager(relay.url, **caps)
            interval, flags = "1s", ("--rules.alert.resend-delay=1s",)
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(PROMETHEUS_DIR / "rules" / "alerting.yml")],
            "alerting": {
                "alertmanagers": [
                    {"static_configs": [{"targets": [f"127.0.0.1:{alertmanager.port}"]}]}
                ]
            },
            "scrape_configs": [],
        }
        prometheus = stack.prometheus(config, flags=flags)
        armed = wait_for(
            lambda: (
                "dockpulse_relay_heartbeat_age_seconds"
                in requests.get(f"{relay.url}/metrics", timeout=5).text
            ),
            120,
        )
        prometheus.process.kill()
        killed = time.time()

        def blind() -> list[Received]:
            return [m for m in outbox_mails(relay.outbox) if "Monitoring is blind" in m.subject]

        wait_for(lambda: bool(blind()), 240 if scale.shipped_heartbeat else 60, 0.5)
        mails = blind()
    timing = "shipped timings" if scale.shipped_heartbeat else "test timings (5s timeout)"
    return Row(
        "Prometheus killed (dead man's switch)",
        1,
        int(bool(mails)),
        int(not mails),
        max(len(mails) - 1, 0),
        mails[0].at - killed if mails else None,
        f"armed: {armed}; {timing}",
    )


@contextlib.contextmanager
def small_filesystem(size: str = "8m") -> Iterator[Path]:
    """A tmpfs of `size` mounted under /tmp for the store; unmounted afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="dp-chaos-fs-"))
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        check=True,
        capture_output=True,
    )
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def disk_full(work: Path, scale: Scale) -> Row:
    """The store's filesystem fills up; the relay answers 503, Alertmanager (the poster) retries;
    space comes back and everything acknowledged is mailed."""
    alerts = [webhook_alert("ContainerDown", f"disk{n}") for n in range(40)]
    with small_filesystem() as fs:
        env = {"RELAY_STORE": str(fs / "relay.db")}
        with relay_process(work / "disk-full", **env) as relay:
            deadline = time.monotonic() + scale.timeout
            started = time.time()
            for item in alerts[:10]:
                post_until_stored(relay.url, webhook(item), deadline)
            filler = fs / "filler"
            with contextlib.suppress(OSError), filler.open("wb") as fill:  # close may fail too
                while True:
                    fill.write(b"\0" * 65536)
                    fill.flush()
            refused = 0
            results: list[int] = []
            poster = threading.Thread(
                target=lambda: results.extend(
                    post_until_stored(relay.url, webhook(item), deadline) for item in alerts[10:]
                ),
                daemon=True,
            )
            poster.start()
            time.sleep(scale.disk_full)
            filler.unlink()  # space again
            poster.join(scale.timeout)
            refused = sum(attempts - 1 for attempts in results)
            outbox = relay.folder / "outbox"
            wait_for(
                lambda: (
                    fingerprints_of(alerts)
                    <= {e[0] for m in outbox_mails(outbox) for e in entries(m)}
                ),
                60,
            )
            mails = outbox_mails(outbox)
    return count(
        "store disk full, then space again",
        fingerprints_of(alerts),
        mails,
        started,
        f"{refused} posts answered 503 while full and retried",
    )


HOSTILE = [
    {"name": "evil\r\nBcc: victim@example.com"},
    {"name": "lf\nSubject: injected"},
    {"summary": "<script>alert(1)</script>"},
    {"description": "\x00\x1b[31mred\x7f\u2028\u2029"},
    {"name": "surrogate\ud800"},
    {"summary": "x" * 100_000},
    {"name": "=?utf-8?b?SGk=?="},
    {"runbook": "\r\n\r\n<html>"},
    {"name": "é" * 500},
    {"summary": "\n".join(f"Fingerprint: fake{n}" for n in range(5))},
]


def hostile_burst(work: Path, scale: Scale) -> Row:
    """`burst` alerts with ten hostile ones in the middle: every one is mailed."""
    alerts = []
    for number in range(scale.burst):
        alert = webhook_alert(
            "HighCpu" if number % 3 else "ContainerDown",
            f"c{number}",
            "warning" if number % 3 else "critical",
        )
        alerts.append(alert)
    middle = scale.burst // 2 - len(HOSTILE) // 2
    for offset, hostile in enumerate(HOSTILE):
        alert = alerts[middle + offset]
        if "name" in hostile:
            alert["labels"]["name"] = hostile["name"]
        alert["annotations"].update({k: v for k, v in hostile.items() if k != "name"})
    with relay_process(work / "hostile", RELAY_MAX_BODY_BYTES="1048576") as relay:
        deadline = time.monotonic() + scale.timeout
        started = time.time()
        for alert in alerts:
            post_until_stored(relay.url, webhook(alert), deadline)
        outbox = relay.folder / "outbox"
        wait_for(
            lambda: (
                fingerprints_of(alerts) <= {e[0] for m in outbox_mails(outbox) for e in entries(m)}
            ),
            60,
        )
        mails = outbox_mails(outbox)
        dead = requests.get(f"{relay.url}/metrics", timeout=5).text
    dead_letters = re.search(r"^dockpulse_relay_dead_letters (\S+)$", dead, re.MULTILINE)
    return count(
        "hostile content in a burst",
        fingerprints_of(alerts),
        mails,
        started,
        f"{len(HOSTILE)} hostile; dead letters: {dead_letters.group(1) if dead_letters else '?'}",
    )


SCENARIOS: dict[str, Callable[[Path, Scale], Row]] = {
    "flapping": flapping,
    "kill-9": kill_9_mid_burst,
    "ses-unreachable": ses_unreachable,
    "ses-credentials": ses_credentials,
    "alertmanager-restart": alertmanager_restarted,
    "prometheus-killed": prometheus_killed,
    "disk-full": disk_full,
    "hostile": hostile_burst,
}


@dataclass
class Table:
    rows: list[Row] = field(default_factory=list)

    def render(self) -> str:
        header = ["scenario", "incidents", "mailed", "lost", "duplicated", "first mail s", "note"]
        cells = [header, *(row.cells() for row in self.rows)]
        widths = [max(len(line[i]) for line in cells) for i in range(len(header) - 1)]
        lines = []
        for line in cells:
            lines.append(
                " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=False))
                + " | "
                + line[-1]
            )
        lines.insert(1, "-" * len(lines[0]))
        return "\n".join(lines)
