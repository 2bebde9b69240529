"""The container context's pure parts in milliseconds: redaction, cleaning, the event ring, the
log tail (no dockerd; the real path is in tests/e2e/test_alert_mails.py)."""

from __future__ import annotations

from dockpulse.redact import (
    AWS_KEY_ID_REDACTED,
    AWS_SECRET_REDACTED,
    PEM_REDACTED,
    REDACTED,
    redact,
    redact_lines,
)
from dockpulse_exporter.context import exit_meaning, log_entries, tail_lines
from dockpulse_exporter.events import EventRings
from dockpulse_exporter.model import Container

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def test_secret_shapes_are_redacted_and_their_keys_kept() -> None:
    line = (
        "connect password=hunter2 passwd: 'x y' secret=s3 token=abc api_key=k1 "
        f'{{"password": "p w"}} AKIAIOSFODNN7EXAMPLE aws_secret_access_key={AWS_SECRET} '
        f"bare {AWS_SECRET} end"
    )
    cleaned = redact(line)
    for secret in ("hunter2", "x y", "s3 ", "abc", "k1", "p w", "AKIAIOSFODNN7EXAMPLE", AWS_SECRET):
        assert secret not in cleaned, (secret, cleaned)
    assert "password=[REDACTED]" in cleaned and "passwd: '[REDACTED]'" in cleaned
    assert f'"password": "{REDACTED}"' in cleaned
    assert AWS_KEY_ID_REDACTED in cleaned and f"bare {AWS_SECRET_REDACTED} end" in cleaned


def test_headers_bearer_tokens_and_pem_blocks_are_redacted() -> None:
    assert redact("Authorization: Basic dXNlcjpwYXNz") == f"Authorization: {REDACTED}"
    assert redact("sent Bearer eyJhbGciOi.x-y_z to api") == f"sent Bearer {REDACTED} to api"
    pem = "key: -----BEGIN RSA PRIVATE KEY-----\nMIIE\nabc\n-----END RSA PRIVATE KEY----- ok"
    assert redact(pem) == f"key: {PEM_REDACTED} ok"
    lines = ["before", "-----BEGIN PRIVATE KEY-----", "MIIEvQ", "-----END PRIVATE KEY-----", "x"]
    assert redact_lines(lines) == ["before", PEM_REDACTED, PEM_REDACTED, PEM_REDACTED, "x"]


def test_ordinary_text_is_left_alone() -> None:
    sha = "3f786850e387550fdab836ed7e6dc881de23001b"  # a git SHA-1: lower-case hex
    text = f"commit {sha} tokens used: 12, passwordless login ok"
    assert redact(text) == text


def test_log_lines_are_tailed_bounded_split_and_folded() -> None:
    chunks = [b"2026-01-01T00:00:00.1Z one\n2026-01-01T00:00:01Z two", b" halves\n", b"x" * 9000]
    raw = tail_lines(chunks, max_lines=2, max_line_bytes=100)
    assert raw == [b"2026-01-01T00:00:01Z two halves", b"x" * 100]
    attack = b"2026-01-01T00:00:02Z ok\rSubject: fake\x1b[2K\xe2\x80\xa8password=pw1"
    (entry,) = log_entries([attack], line_chars=200, total_chars=1000)
    assert entry == {
        "time": "2026-01-01T00:00:02Z",
        "text": f"ok Subject: fake [2K password={REDACTED}",
    }
    many = [f"2026-01-01T00:00:0{i}Z line {i}".encode() for i in range(5)]
    kept = log_entries(many, line_chars=200, total_chars=60)
    assert [item["text"] for item in kept] == ["line 3", "line 4"]  # the newest kept


def test_exit_codes_have_their_usual_meaning() -> None:
    assert exit_meaning(137) == "killed (SIGKILL)"
    assert exit_meaning(143) == "terminated (SIGTERM)"
    assert exit_meaning(139) == "segmentation fault (SIGSEGV)"
    assert exit_meaning(1) == "generic error"
    assert exit_meaning(0) == "exited cleanly"
    assert exit_meaning(137, oom_killed=True).startswith("killed by the OOM killer")


def _container(cid: str, image_id: str, name: str = "web") -> Container:
    return Container(
        cid, name, "web:latest", {}, "running", 1, 0, False, 0, "none", 0.0, "", "", 0, 0, 0,
        image_id=image_id,
    )  # fmt: skip


def _event(action: str, cid: str, moment: int, **attributes: str) -> dict[str, object]:
    return {
        "Action": action,
        "id": cid,
        "timeNano": moment * 1_000_000_000,
        "Actor": {"ID": cid, "Attributes": {"name": "web", **attributes}},
    }


def test_the_ring_is_bounded_remembers_a_recreate_and_keeps_a_tombstone() -> None:
    now = [1000.0]
    rings = EventRings(per_container=3, tombstone_seconds=60, clock=lambda: now[0])
    old, new = _container("a" * 64, "sha256:old"), _container("b" * 64, "sha256:new")
    rings.record(_event("create", old.id, 1), old)
    rings.record(_event("die", old.id, 2, exitCode="0"), old)
    rings.record(_event("destroy", old.id, 3), None)
    assert rings.history("web").removed_at == 3
    rings.record(_event("create", new.id, 4), new)
    rings.record(_event("start", new.id, 5), new)
    rings.record(_event("exec_start: sh", new.id, 5), new)  # not kept
    rings.record(_event("health_status: unhealthy", new.id, 6), new)
    rings.record(_event("die", new.id, 7, exitCode="1"), new, memory_peak_bytes=5 << 20)
    history = rings.history("web")
    assert history is not None and history.removed_at is None
    assert [(e.action, e.detail) for e in history.events] == [
        ("start", ""),
        ("health_status", "unhealthy"),
        ("die", "exit code 1"),
    ]  # bounded to 3; the recreate fell out of this small ring
    assert history.memory_peak_bytes == 5 << 20 and history.image_id == "sha256:new"
    assert rings.history("b" * 12).name == "web"  # by id prefix too

    rings = EventRings(per_container=5, tombstone_seconds=60, clock=lambda: now[0])
    rings.record(_event("create", old.id, 1), old)
    rings.record(_event("destroy", old.id, 2), None)
    rings.record(_event("create", new.id, 3), new)
    (recreated,) = [e for e in rings.history("web").events if e.action == "recreated"]
    assert recreated.detail == "from image sha256:new (was sha256:old)"
    rings.record(_event("destroy", new.id, 4), None)
    now[0] += 61
    assert rings.history("web") is None and len(rings) == 0  # the tombstone expired
