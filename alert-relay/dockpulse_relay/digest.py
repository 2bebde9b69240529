"""Which buffered alerts are mailed now, grouped how, and which are dropped.

- Critical alerts bypass the buffer: they go out on the next pass, one mail per status.
- Warnings (any other severity) wait: once the oldest has waited `buffer_timeout`, every
  buffered warning goes out together, firing ones in one digest, resolved ones in another.
- Cooldown: an alert (fingerprint + status) mailed less than `alert_cooldown` ago is dropped.
- Resolved notifications are dropped when `send_resolved` is off.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dockpulse_relay.store import BufferedAlert


@dataclass
class MailPlan:
    kind: str  # critical | digest | resolved
    severity: str
    resolved: bool
    alerts: list[BufferedAlert] = field(default_factory=list)


@dataclass
class Plan:
    mails: list[MailPlan] = field(default_factory=list)
    suppressed: dict[str, list[int]] = field(default_factory=dict)  # reason -> alert ids

    def suppress(self, reason: str, alert_id: int) -> None:
        self.suppressed.setdefault(reason, []).append(alert_id)


def plan_mails(
    buffered: list[BufferedAlert],
    last_mailed: dict[tuple[str, str], float],
    now: float,
    *,
    buffer_timeout: float,
    alert_cooldown: float,
    send_resolved: bool,
    digest_max_alerts: int,
) -> Plan:
    """Decide what the buffer turns into at `now`; alerts not mentioned keep waiting."""
    plan = Plan()
    warnings = [item for item in buffered if not item.alert.critical]
    warnings_due = bool(warnings) and now - warnings[0].received_at >= buffer_timeout
    due = [item for item in buffered if item.alert.critical or warnings_due]
    groups: dict[tuple[bool, bool], list[BufferedAlert]] = {}
    mailed = dict(last_mailed)
    for item in due:
        alert = item.alert
        resolved = alert.status == "resolved"
        cooldown_key = (alert.fingerprint, alert.status)
        if resolved and not send_resolved:
            plan.suppress("resolved_disabled", item.id)
        elif now - mailed.get(cooldown_key, float("-inf")) < alert_cooldown:
            plan.suppress("cooldown", item.id)
        else:
            mailed[cooldown_key] = now
            groups.setdefault((alert.critical, resolved), []).append(item)
    for (critical, resolved), items in groups.items():
        kind = "resolved" if resolved else "critical" if critical else "digest"
        severity = "critical" if critical else _highest_severity(items)
        for start in range(0, len(items), digest_max_alerts):
            chunk = items[start : start + digest_max_alerts]
            plan.mails.append(MailPlan(kind, severity, resolved, chunk))
    return plan


def _highest_severity(items: list[BufferedAlert]) -> str:
    severities = {item.alert.severity for item in items}
    return "warning" if "warning" in severities else sorted(severities)[0]
