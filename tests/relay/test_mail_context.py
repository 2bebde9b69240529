"""The container's context in a mail, in milliseconds: hostile text escaped, hints in "What to
do", an exporter away or stuck costing at most the budget (a real socket each; the whole path
with a real exporter is in tests/e2e/test_alert_mails.py)."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from dockpulse.settings import ConfigError
from dockpulse.web_config import load_web_config
from dockpulse_exporter.http import make_server
from dockpulse_relay.compose.context import ContainerContext, ContextFetch
from dockpulse_relay.compose.context_view import hints
from dockpulse_relay.compose.message import compose
from dockpulse_relay.config import load_config
from dockpulse_relay.intake.payload import parse_notification
from dockpulse_relay.model import Entry, MailPlan
from testkit.helpers import free_port
from testkit.mail import parse
from testkit.passwords import bcrypt_hash
from tests.relay.payloads import alert, notification

HOSTILE = {
    "container": "web",
    "removed": False,
    "exit": {"code": 137, "meaning": "killed (SIGKILL)", "oom_killed": True, "finished_at": ""},
    "restart": {"count": 2, "policy": "on-failure"},
    "memory": {"limit_bytes": 32 << 20, "peak_bytes": 31 << 20},
    "health": {
        "status": "unhealthy",
        "failing_streak": 3,
        "log": [{"end": "", "exit_code": 1, "output": "curl: (7) Connection refused"}],
    },
    "events": [{"time": 1.0, "action": "oom", "detail": ""}],
    "logs": {"lines": [{"time": "2026-01-01T00:00:00Z", "text": "<script>x</script>"}]},
}


def _mail(context: ContainerContext) -> email.message.EmailMessage:
    (parsed,) = parse_notification(
        json.dumps(notification(alert("ContainerOOMKilled", "web"))).encode()
    )
    plan = MailPlan("critical", "critical", False, [Entry(parsed, [1], 0.0, [parsed], False)])
    mail = compose(
        plan, "r@example.com", ["o@example.com"], "http://p:9090", 0.0, contexts=[context]
    )
    message = parse(mail.message)
    assert isinstance(message, email.message.EmailMessage)
    return message


def test_the_context_is_in_both_parts_escaped_with_its_hints() -> None:
    message = _mail(ContainerContext(HOSTILE, "", "host1:9487"))
    text = message.get_body(("plain",)).get_content()
    page = message.get_body(("html",)).get_content()
    assert "exit code 137 (killed (SIGKILL))" in text and "OOM-killed: yes" in text
    assert "2026-01-01T00:00:00Z <script>x</script>" in text
    assert "&lt;script&gt;x&lt;/script&gt;" in page and "<script>" not in page
    for part in (text, page):
        assert "It was OOM-killed (limit 32.0 MiB, peak seen 31.0 MiB)" in part
        assert "the process is not listening on its port" in part


@pytest.mark.parametrize(
    ("peak_mib", "hint"),
    [(31, "most likely the OOM killer, though Docker did not flag it"),
     (5, "Exit 137 without an OOM kill: something killed it")],
)  # fmt: skip
def test_exit_137_at_the_memory_limit_reads_as_an_oom_kill_docker_missed(
    peak_mib: int, hint: str
) -> None:
    """Docker 20.10 under the systemd driver on cgroup v2 left OOMKilled false for a
    container the kernel OOM-killed (the cgroup v2 guest, issue 17)."""
    data = {
        **HOSTILE,
        "exit": {**HOSTILE["exit"], "oom_killed": False},
        "memory": {"limit_bytes": 32 << 20, "peak_bytes": peak_mib << 20},
        "health": {},
    }
    found = hints(ContainerContext(data, "", "host1:9487"))
    assert len(found) == 1 and hint in found[0], found


def test_a_missing_context_says_why() -> None:
    message = _mail(ContainerContext(None, "the exporter at host1:9487 is unreachable"))
    text = message.get_body(("plain",)).get_content()
    assert "Why: context unavailable: the exporter at host1:9487 is unreachable" in text


@pytest.fixture
def stuck_port() -> Iterator[int]:
    """A socket that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


def test_an_exporter_away_or_stuck_costs_at_most_the_budget(stuck_port: int) -> None:
    alerts = parse_notification(
        json.dumps(notification(alert("ContainerDown", "a"), alert("ContainerDown", "b"))).encode()
    )
    away = replace(alerts[0], labels={**alerts[0].labels, "instance": f"127.0.0.1:{free_port()}"})
    stuck = replace(alerts[1], labels={**alerts[1].labels, "instance": f"127.0.0.1:{stuck_port}"})
    began = time.monotonic()
    fetch = ContextFetch.start([away, stuck], "http://{instance}", max_contexts=5, timeout=1.0)
    first, second = fetch.collect(began + 1.0)
    assert time.monotonic() - began < 1.8
    assert first is not None and first.reason.endswith("is unreachable")
    assert second is not None and second.data is None and "did not answer" in second.reason


def test_the_exporter_url_must_name_the_instance() -> None:
    with pytest.raises(ConfigError, match=r"^exporter_url \(EXPORTER_URL\): expected"):
        load_config(None, {"exporter_url": "http://exporter:9487"})


def test_the_context_is_fetched_with_the_exporters_credentials(tmp_path: Path) -> None:
    """The exporter behind its web config (the demo's): with EXPORTER_USERNAME/PASSWORD the
    context arrives; without them the mail says the exporter refused."""
    hashed = bcrypt_hash("s3cret")
    config_file = tmp_path / "web.yml"
    config_file.write_text(yaml.safe_dump({"basic_auth_users": {"dockpulse": hashed}}))
    server = make_server(
        "127.0.0.1",
        0,
        None,  # type: ignore[arg-type]  # /metrics is not asked for here
        web_config=load_web_config(config_file),
        container_context=lambda ref: (200, {**HOSTILE, "container": ref}),
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (parsed,) = parse_notification(
            json.dumps(notification(alert("ContainerDown", "web"))).encode()
        )
        down = replace(
            parsed, labels={**parsed.labels, "instance": f"127.0.0.1:{server.server_address[1]}"}
        )
        config = load_config(
            None, {"exporter_username": "dockpulse", "exporter_password": "s3cret"}
        )
        began = time.monotonic()
        with_auth = ContextFetch.start([down], "http://{instance}", 5, 2.0, config.exporter_auth)
        (found,) = with_auth.collect(began + 2.0)
        without = ContextFetch.start([down], "http://{instance}", 5, 2.0)
        (refused,) = without.collect(began + 4.0)
    finally:
        server.shutdown()
    assert found is not None and found.data is not None and found.data["container"] == "web"
    assert refused is not None and refused.data is None, refused
