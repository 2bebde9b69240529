"""Which buffered alerts are mailed now, grouped how, which wait, and which are dropped.

- Critical alerts bypass the buffer: they go out on the next pass, one mail per status.
- Warnings (any other severity) wait: once the oldest has waited `buffer_timeout`, every
  buffered warning goes out together, firing ones in one digest, resolved ones in another.
- Cooldown defers, never drops: an alert (fingerprint) mailed less than `alert_cooldown` ago is
  *held*. When the cooldown ends, everything held about it goes out as one mail telling what
  happened meanwhile and what the state is now (the last change). One exception keeps
  recoveries prompt: the first resolved notification after a plain firing mail goes at once.
- Resolved notifications are dropped when `send_resolved` is off, unless a held firing went
  unmailed meanwhile (an outage nobody heard of is mailed, with its recovery).
"""

from __future__ import annotations

from datetime import datetime

from dockpulse_relay.model import BufferedAlert, Cooldown, Entry, MailPlan, Plan, event_time_text


def warnings_cutoff(now: float, buffer_timeout: float) -> float:
    """The one rule for the digest's wait: buffered warnings are due once the oldest of them was
    received at or before this time (the store reads the buffer by it, `plan_mails` decides by
    it)."""
    return now - buffer_timeout


def _event_time(item: BufferedAlert) -> tuple[float, float, int]:
    """When the change happened (by Prometheus' clock), then when it was received."""
    try:
        when = datetime.fromisoformat(event_time_text(item.alert)).timestamp()
    except (ValueError, OverflowError, OSError):
        when = item.received_at
    return when, item.received_at, item.id


def plan_mails(
    buffered: list[BufferedAlert],
    cooldowns: dict[str, Cooldown],
    now: float,
    *,
    buffer_timeout: float,
    alert_cooldown: float,
    send_resolved: bool,
    digest_max_alerts: int,
) -> Plan:
    """Decide what the buffer turns into at `now`; alerts not mentioned keep waiting.

    `buffered` holds fresh alerts (state buffered) and held ones (state held, `item.held`).
    """
    plan = Plan()
    fresh_warnings = [item for item in buffered if not item.held and not item.alert.critical]
    warnings_due = bool(fresh_warnings) and (
        min(item.received_at for item in fresh_warnings) <= warnings_cutoff(now, buffer_timeout)
    )
    by_fingerprint: dict[str, list[BufferedAlert]] = {}
    for item in buffered:
        if item.held or item.alert.critical or warnings_due:
            by_fingerprint.setdefault(item.alert.fingerprint, []).append(item)

    groups: dict[tuple[bool, bool], list[Entry]] = {}
    for fingerprint, items in by_fingerprint.items():
        items.sort(key=_event_time)
        cooldown = cooldowns.get(fingerprint)
        due_at = cooldown.mailed_at + alert_cooldown if cooldown else float("-inf")
        prompt_recovery = (
            cooldown is not None
            and cooldown.status == "firing"
            and not cooldown.summary
            and all(item.alert.status == "resolved" and not item.held for item in items)
        )
        if now < due_at and not prompt_recovery:
            for item in items:
                plan.held[item.id] = due_at
            continue
        latest = items[-1].alert
        entry = Entry(
            alert=latest,
            ids=[item.id for item in items],
            received_at=min(item.received_at for item in items),
            changes=[item.alert for item in items],
            held=any(item.held for item in items),
        )
        unheard_outage = any(item.alert.status == "firing" for item in items)
        if latest.status == "resolved" and not send_resolved and not unheard_outage:
            for item in items:
                plan.suppress("resolved_disabled", item.id)
            continue
        groups.setdefault((latest.critical, latest.status == "resolved"), []).append(entry)

    # Critical mails first, firing before resolved.
    for (critical, resolved), entries in sorted(groups.items(), key=_critical_first):
        kind = "resolved" if resolved else "critical" if critical else "digest"
        severity = "critical" if critical else _highest_severity(entries)
        entries.sort(key=lambda entry: entry.received_at)
        for start in range(0, len(entries), digest_max_alerts):
            chunk = entries[start : start + digest_max_alerts]
            plan.mails.append(MailPlan(kind, severity, resolved, chunk))
    return plan


def _critical_first(group: tuple[tuple[bool, bool], list[Entry]]) -> tuple[bool, bool]:
    (critical, resolved), _ = group
    return not critical, resolved


def _highest_severity(entries: list[Entry]) -> str:
    severities = {entry.alert.severity for entry in entries}
    return "warning" if "warning" in severities else sorted(severities)[0]
