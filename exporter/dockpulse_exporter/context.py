"""What the exporter can tell about a container, on request, for the alert mail.

`GET /api/v1/containers/<name or id>/context` answers JSON: how it ended (exit code and its
usual meaning, OOMKilled, finish time, Docker's error), restarts and policy, memory limit and
the peak the exporter sampled, HEALTHCHECK's last results, its recent events (EventRings) and
its last log lines (Docker's logs API, `tail` with timestamps; json-file, local and journald).

Never on the scrape path: each request runs in a small pool of its own with `timeout`, on a
Docker client of its own, so a slow engine costs that request its timeout and nothing else.
Bounded: `log_lines` lines, `line_chars` characters a line, `total_chars` in all (the oldest
lines go first). Everything a program wrote (log lines, health output, Docker's error) is
redacted (dockpulse/redact.py) and cleaned (dockpulse/text.py) before it leaves. Log lines are
left out for a container labelled `dockpulse.mail_logs=false`, or everywhere with the
exporter's `mail_logs: false`; the rest stays.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import docker

from dockpulse.redact import redact, redact_lines
from dockpulse.text import body_text, one_line
from dockpulse_exporter.docker_watch import DOCKER_ERRORS, _unix_time
from dockpulse_exporter.events import ContainerHistory, EventRings
from dockpulse_exporter.model import Container

log = logging.getLogger(__name__)

MAIL_LOGS_LABEL = "dockpulse.mail_logs"
REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")  # a container name or id
HEALTH_OUTPUT_CHARS = 1000
HEALTH_RESULTS = 5
ERROR_CHARS = 500
# The usual meaning of an exit code (128 + n: ended by signal n).
EXIT_MEANINGS = {
    0: "exited cleanly",
    1: "generic error",
    2: "misuse of a shell builtin or bad arguments",
    125: "Docker could not run the container",
    126: "command cannot be executed",
    127: "command not found",
    130: "interrupted (SIGINT)",
    134: "aborted (SIGABRT)",
    137: "killed (SIGKILL)",
    139: "segmentation fault (SIGSEGV)",
    143: "terminated (SIGTERM)",
}


def exit_meaning(code: int, oom_killed: bool = False) -> str:
    """What exit code `code` usually means; an OOM kill says so."""
    if oom_killed:
        return "killed by the OOM killer (out of memory)"
    if code in EXIT_MEANINGS:
        return EXIT_MEANINGS[code]
    if 128 < code < 160:
        return f"ended by signal {code - 128}"
    return "application error"


@dataclass(frozen=True)
class ContextLimits:
    """How much of a container's log goes out, and how long a request may take."""

    log_lines: int = 20
    line_chars: int = 500
    total_chars: int = 8000
    timeout: float = 3.0
    mail_logs: bool = True  # False: no log lines for any container


def tail_lines(chunks: Iterable[bytes], max_lines: int, max_line_bytes: int) -> list[bytes]:
    """The last `max_lines` lines of a byte stream, each cut at `max_line_bytes`: memory stays
    bounded however long a line is."""
    kept: deque[bytes] = deque(maxlen=max_lines)
    current = bytearray()
    for chunk in chunks:
        parts = chunk.split(b"\n")
        for index, part in enumerate(parts):
            room = max_line_bytes - len(current)
            if room > 0:
                current += part[:room]
            if index < len(parts) - 1:
                kept.append(bytes(current))
                current = bytearray()
    if current:
        kept.append(bytes(current))
    return list(kept)


def log_entries(raw_lines: list[bytes], line_chars: int, total_chars: int) -> list[dict[str, Any]]:
    """`{"time", "text"}` per line (Docker's `timestamps` prefix split off), redacted, cleaned
    to one line each, the oldest dropped past `total_chars`."""
    stamps, texts = [], []
    for raw in raw_lines:
        line = raw.decode("utf-8", errors="replace").rstrip("\r")
        stamp, _, text = line.partition(" ")
        if not stamp[:4].isdigit():
            stamp, text = "", line
        stamps.append(stamp)
        texts.append(text)
    entries = [
        {"time": stamp, "text": one_line(text, line_chars)}
        for stamp, text in zip(stamps, redact_lines(texts), strict=True)
    ]
    total = 0
    for index in range(len(entries) - 1, -1, -1):
        total += len(entries[index]["text"]) + len(entries[index]["time"])
        if total > total_chars:
            return entries[index + 1 :]
    return entries


def outside_text(text: str, limit: int) -> str:
    """Text a program wrote (health output, Docker's error), redacted and cleaned."""
    return body_text(redact(text), limit).strip()


def _health(state: dict[str, Any]) -> dict[str, Any] | None:
    health = state.get("Health")
    if not health:
        return None
    results = [
        {
            "start": item.get("Start", ""),
            "end": item.get("End", ""),
            "exit_code": item.get("ExitCode"),
            "output": outside_text(str(item.get("Output") or ""), HEALTH_OUTPUT_CHARS),
        }
        for item in (health.get("Log") or [])[-HEALTH_RESULTS:]
    ]
    return {
        "status": health.get("Status", ""),
        "failing_streak": int(health.get("FailingStreak") or 0),
        "log": results,
    }


def _events(history: ContainerHistory | None) -> list[dict[str, Any]]:
    return [event.to_json() for event in history.events] if history else []


def _events_with_end(
    history: ContainerHistory | None, state: dict[str, Any], running: bool
) -> list[dict[str, Any]]:
    """The ring's events; for a stopped container whose die the watcher has not recorded yet
    (its event stream lags on a busy engine), the end as `inspect` tells it."""
    events = _events(history)
    finished = _unix_time(state.get("FinishedAt"))
    started = _unix_time(state.get("StartedAt"))
    if (
        running
        or not finished
        or any(e["action"] == "die" and e["time"] >= started for e in events)
    ):
        return events
    code = int(state.get("ExitCode") or 0)
    return [*events, {"time": finished, "action": "die", "detail": f"exit code {code}"}]


def _removed(ref: str, history: ContainerHistory | None) -> dict[str, Any]:
    """What is left of a removed container: its events (a tombstone) and that it is gone."""
    return {
        "container": history.name if history else ref,
        "id": history.container_id if history else "",
        "image": history.image if history else "",
        "image_id": history.image_id if history else "",
        "removed": True,
        "removed_at": history.removed_at if history else None,
        "memory": {"peak_bytes": history.memory_peak_bytes if history else None},
        "events": _events(history),
        "logs": {"lines": [], "reason": "the container was removed: no logs left"},
    }


class ContainerContext:
    """Builds a container's context on request; `answer(ref)` -> (HTTP status, JSON body)."""

    def __init__(
        self,
        docker_host: str,
        rings: EventRings,
        containers: Callable[[], list[Container]],
        memory_peak: Callable[[str], int | None],
        limits: ContextLimits,
        workers: int = 2,
    ) -> None:
        self.docker_host = docker_host
        self.rings = rings
        self.containers = containers
        self.memory_peak = memory_peak  # by container id: the sampler's
        self.limits = limits
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="context")
        self._slots = threading.BoundedSemaphore(workers * 2)
        self._client: docker.APIClient | None = None

    def _api(self) -> docker.APIClient:
        if self._client is None:
            self._client = docker.APIClient(base_url=self.docker_host, timeout=self.limits.timeout)
        return self._client

    def answer(self, ref: str) -> tuple[int, dict[str, Any]]:
        """The context of container `ref` within `timeout`, or an error body that says why."""
        if not REFERENCE.match(ref):
            return 400, {"error": "expected a container name or id"}
        if not self._slots.acquire(blocking=False):
            return 503, {"error": "busy: too many context requests at once"}
        try:
            future = self._pool.submit(self.build, ref)
            try:
                return future.result(timeout=self.limits.timeout)
            except FutureTimeout:
                future.cancel()
                seconds = f"{self.limits.timeout:g}"
                return 504, {"error": f"Docker did not answer within {seconds} s"}
        finally:
            self._slots.release()

    def _find(self, ref: str) -> Container | None:
        known = self.containers()
        by_name = next((c for c in known if c.name == ref), None)
        if by_name is not None or len(ref) < 12:
            return by_name
        return next((c for c in known if c.id.startswith(ref)), None)

    def build(self, ref: str) -> tuple[int, dict[str, Any]]:
        history = self.rings.history(ref)
        container = self._find(ref)
        if container is None and history is None:
            return 404, {"error": f"no container {ref} here", "container": ref}
        if container is None:
            return 200, _removed(ref, history)
        try:
            data = self._api().inspect_container(container.id)
        except docker.errors.NotFound:
            return 200, _removed(ref, history)
        except DOCKER_ERRORS as exc:
            return 502, {"error": f"Docker: {type(exc).__name__}", "container": container.name}
        body = self._described(container, data, history)
        body["logs"] = self._logs(container)
        return 200, body

    def _peak(self, container: Container, history: ContainerHistory | None) -> int | None:
        sampled = history.memory_peak_bytes if history else None
        current = self.memory_peak(container.id)
        return max(sampled or 0, current or 0) or None

    def _described(
        self, container: Container, data: dict[str, Any], history: ContainerHistory | None
    ) -> dict[str, Any]:
        state = data.get("State") or {}
        host = data.get("HostConfig") or {}
        policy = host.get("RestartPolicy") or {}
        code = int(state.get("ExitCode") or 0)
        oom = bool(state.get("OOMKilled"))
        running = state.get("Status") == "running"
        return {
            "container": container.name,
            "id": container.id,
            "image": container.image,
            "image_id": str(data.get("Image") or ""),
            "state": state.get("Status", ""),
            "removed": False,
            "exit": {
                "code": None if running else code,
                "meaning": "" if running else exit_meaning(code, oom),
                "oom_killed": oom,
                "finished_at": state.get("FinishedAt", ""),
                "finished_at_unix": _unix_time(state.get("FinishedAt")),
                "error": outside_text(str(state.get("Error") or ""), ERROR_CHARS),
            },
            "started_at": state.get("StartedAt", ""),
            "restart": {
                "count": int(data.get("RestartCount") or 0),
                "policy": policy.get("Name") or "no",
                "maximum_retry_count": int(policy.get("MaximumRetryCount") or 0),
            },
            "memory": {
                "limit_bytes": int(host.get("Memory") or 0) or None,
                "peak_bytes": self._peak(container, history),
            },
            "health": _health(state),
            "events": _events_with_end(history, state, running),
        }

    def _logs(self, container: Container) -> dict[str, Any]:
        limits = self.limits
        if not limits.mail_logs:
            return {"lines": [], "reason": "log lines are turned off on this exporter"}
        if container.labels.get(MAIL_LOGS_LABEL, "").strip().lower() == "false":
            return {"lines": [], "reason": f"log lines are turned off ({MAIL_LOGS_LABEL}=false)"}
        try:
            stream = self._api().logs(
                container.id,
                stdout=True,
                stderr=True,
                timestamps=True,
                tail=limits.log_lines,
                stream=True,
                follow=False,  # docker-py follows a stream by default: a running one never ends
            )
            raw = tail_lines(stream, limits.log_lines, limits.line_chars * 2)
        except docker.errors.APIError as exc:
            reason = one_line(str(exc.explanation or exc), 200)
            return {"lines": [], "reason": f"Docker cannot read its logs: {reason}"}
        except DOCKER_ERRORS as exc:
            return {"lines": [], "reason": f"Docker's logs API failed: {type(exc).__name__}"}
        return {"lines": log_entries(raw, limits.line_chars, limits.total_chars), "reason": ""}
