"""The "why it stopped" part of an alert mail, from a ContainerContext, and the hints it gives
"What to do".

Everything shown came from the container (log lines, health output): the exporter redacted
it; here it is cleaned again (dockpulse/text.py) and escaped in HTML.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

from dockpulse.text import one_line
from dockpulse_relay.compose.context import ContainerContext

LINE_CHARS = 500
NEAR_LIMIT = 0.9  # of the memory limit: a peak this high and exit 137 read as an OOM kill


def _iec(value: Any) -> str:
    if not isinstance(value, int | float) or value <= 0:
        return "unknown"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def _moment(stamp: Any) -> str:
    if isinstance(stamp, int | float) and stamp > 0:
        return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return one_line(str(stamp or ""), 40)


def _exit_line(data: dict[str, Any]) -> str:
    ended = data.get("exit") or {}
    if ended.get("code") is None:
        return ""
    text = f"exit code {ended['code']} ({one_line(str(ended.get('meaning', '')), 80)})"
    if ended.get("finished_at"):
        text += f", finished {_moment(ended['finished_at'])}"
    if ended.get("error"):
        text += f"; Docker: {one_line(str(ended['error']), 200)}"
    return text


def _memory_line(data: dict[str, Any]) -> str:
    memory = data.get("memory") or {}
    limit, peak = memory.get("limit_bytes"), memory.get("peak_bytes")
    if not limit and not peak:
        return ""
    return f"limit {_iec(limit) if limit else 'none'}, peak seen {_iec(peak)}"


def _near_limit(data: dict[str, Any]) -> bool:
    """The memory peak seen reached NEAR_LIMIT of the limit: the OOM killer's doing, flagged
    or not (Docker 20.10 under the systemd driver on cgroup v2 leaves OOMKilled false)."""
    memory = data.get("memory") or {}
    limit, peak = memory.get("limit_bytes"), memory.get("peak_bytes")
    numbers = isinstance(limit, int | float) and isinstance(peak, int | float)
    return numbers and limit > 0 and peak >= NEAR_LIMIT * limit


def facts(context: ContainerContext) -> list[tuple[str, str]]:
    """(name, one line) pairs: exit, OOM, memory, restarts, health, removal."""
    data = context.data or {}
    found = []
    if data.get("removed"):
        found.append(("Removed", f"yes, {_moment(data.get('removed_at'))}: the container is gone"))
    ended = data.get("exit") or {}
    found += [("Exit", _exit_line(data))]
    if ended.get("oom_killed"):
        found.append(("OOM-killed", "yes, by the kernel's OOM killer"))
    found.append(("Memory", _memory_line(data)))
    restart = data.get("restart") or {}
    if restart:
        policy = one_line(str(restart.get("policy") or "no"), 40)
        found.append(("Restarts", f"{restart.get('count', 0)} (restart policy {policy})"))
    health = data.get("health") or {}
    if health:
        streak = health.get("failing_streak", 0)
        found.append(("Health", f"{one_line(str(health.get('status', '')), 40)}, {streak} failed"))
    return [(name, text) for name, text in found if text]


def health_results(context: ContainerContext) -> list[str]:
    health = (context.data or {}).get("health") or {}
    return [
        f"{_moment(item.get('end') or item.get('start'))} exit {item.get('exit_code')}: "
        f"{one_line(str(item.get('output', '')), LINE_CHARS)}"
        for item in health.get("log") or []
    ]


def event_lines(context: ContainerContext) -> list[str]:
    return [
        one_line(f"{_moment(item.get('time'))} {item.get('action', '')} {item.get('detail', '')}")
        for item in (context.data or {}).get("events") or []
    ]


def log_lines(context: ContainerContext) -> tuple[list[str], str]:
    """The log lines ("time text"), or none and why."""
    logs = (context.data or {}).get("logs") or {}
    lines = [
        one_line(f"{item.get('time', '')} {item.get('text', '')}", LINE_CHARS)
        for item in logs.get("lines") or []
    ]
    reason = one_line(str(logs.get("reason") or ""), 200)
    return lines, reason or ("" if lines else "no log lines")


def hints(context: ContainerContext | None) -> list[str]:
    """What the context says to do: OOM -> limit and peak; 137 without OOM -> killed; health
    check refused -> not listening; a new image just before -> the deploy."""
    if context is None or context.data is None:
        return []
    data = context.data
    found = []
    ended = data.get("exit") or {}
    if data.get("removed"):
        found.append("The container was removed: check who removed it (docker events).")
    if ended.get("oom_killed"):
        found.append(
            f"It was OOM-killed ({_memory_line(data)}): raise its memory limit above the peak "
            "or find what grows."
        )
    elif ended.get("code") == 137 and _near_limit(data):
        found.append(
            f"Exit 137 with its memory at its limit ({_memory_line(data)}): most likely the OOM "
            "killer, though Docker did not flag it (it misses some on cgroup v2): raise the "
            "limit above the peak or find what grows."
        )
    elif ended.get("code") == 137:
        found.append(
            "Exit 137 without an OOM kill: something killed it (SIGKILL: docker kill, an "
            "orchestrator, a stop that timed out)."
        )
    outputs = " ".join(
        str(item.get("output", "")) for item in (data.get("health") or {}).get("log") or []
    )
    if "connection refused" in outputs.lower():
        found.append(
            "The health check's connection was refused: the process is not listening on its port."
        )
    recreated = [e for e in data.get("events") or [] if e.get("action") == "recreated"]
    if recreated:
        found.append(
            f"It was recreated {one_line(str(recreated[-1].get('detail', '')), 200)} at "
            f"{_moment(recreated[-1].get('time'))}: a deploy; compare with the previous image."
        )
    return found


def context_text(context: ContainerContext) -> str:
    """The plain-text section."""
    if context.data is None:
        return f"Why: context unavailable: {one_line(context.reason, 300)}\n"
    source = f" (from the exporter at {one_line(context.source, 100)})" if context.source else ""
    lines = [f"Why{source}:"]
    lines += [f"  {name + ':':<12}{text}" for name, text in facts(context)]
    results = health_results(context)
    if results:
        lines += ["  Health check results:", *(f"    {line}" for line in results)]
    events = event_lines(context)
    if events:
        lines += ["  Recent events:", *(f"    {line}" for line in events)]
    logs, reason = log_lines(context)
    if logs:
        lines += ["  Last log lines:", *(f"    {line}" for line in logs)]
    else:
        lines.append(f"  Log lines:  {reason}")
    return "\n".join(lines) + "\n"


def _pre(lines: list[str]) -> str:
    body = "\n".join(html.escape(line) for line in lines)
    return (
        "<pre style='font-size:12px;background:#f6f8fa;padding:6px;white-space:pre-wrap;"
        f"margin:4px 0'>{body}</pre>"
    )


def context_html(context: ContainerContext) -> str:
    """The HTML section, every value escaped."""
    if context.data is None:
        reason = html.escape(one_line(context.reason, 300))
        return f"<p style='color:#666'><em>Why: context unavailable: {reason}</em></p>"
    source = html.escape(one_line(context.source, 100))
    parts = [f"<h3 style='margin:12px 0 4px'>Why <small>(exporter {source})</small></h3>"]
    rows = "".join(
        f"<tr><th align='left'>{html.escape(name)}</th><td>{html.escape(text)}</td></tr>"
        for name, text in facts(context)
    )
    parts.append(f"<table cellpadding='3'>{rows}</table>")
    for title, lines in (
        ("Health check results", health_results(context)),
        ("Recent events", event_lines(context)),
    ):
        if lines:
            parts.append(f"<p style='margin:6px 0 0'><b>{title}</b></p>{_pre(lines)}")
    logs, reason = log_lines(context)
    if logs:
        parts.append(f"<p style='margin:6px 0 0'><b>Last log lines</b></p>{_pre(logs)}")
    else:
        parts.append(f"<p style='color:#666'><em>Log lines: {html.escape(reason)}</em></p>")
    return "<div class='dockpulse-context'>" + "".join(parts) + "</div>"
