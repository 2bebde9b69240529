"""The compose stage: a plan's mails made whole (graphs and container context fetched within
one budget, then the message), never failing a mail for its extras.

One that cannot be composed with its graphs and links goes without them; one that cannot be
composed at all goes out one alert per mail, so that only the alert that breaks composing is
dead-lettered (a `NewMail` with its `error` set).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace

from dockpulse_relay.compose.chart import Chart, alert_charts
from dockpulse_relay.compose.context import ContainerContext, ContextFetch
from dockpulse_relay.compose.message import compose, uncomposable
from dockpulse_relay.compose.text import link_ready
from dockpulse_relay.config import RelayConfig
from dockpulse_relay.model import Alert, MailPlan, NewMail

log = logging.getLogger("dockpulse_relay.compose")


class Composer:
    def __init__(self, config: RelayConfig) -> None:
        self.config = config

    def compose_all(
        self,
        plans: list[MailPlan],
        now: float,
        deadline: float,
        cancel: threading.Event | None = None,
    ) -> list[NewMail]:
        """Every plan's mails; graphs and contexts of all of them by `deadline` (monotonic):
        Prometheus or the exporter slow or down delays the mails by the budget at most, and is
        a reason in the mail. Once `cancel` is set, what is not fetched yet is left out."""
        ready = [
            [link_ready(entry.alert) if entry.alert.status == "firing" else None
             for entry in plan.entries]
            for plan in plans
        ]  # fmt: skip
        fetches = [self._start_contexts(alerts, deadline) for alerts in ready]
        charts = [
            self._charts(plan, alerts, deadline, cancel)
            for plan, alerts in zip(plans, ready, strict=True)
        ]
        contexts = [fetch.collect(deadline, cancel) for fetch in fetches]
        return [
            mail
            for plan, plan_charts, plan_contexts in zip(plans, charts, contexts, strict=True)
            for mail in self.mails(plan, now, plan_charts, plan_contexts)
        ]

    def _start_contexts(self, alerts: list[Alert | None], deadline: float) -> ContextFetch:
        """Start fetching each firing alert's container context (resolved ones get none)."""
        return ContextFetch.start(
            alerts,
            self.config.exporter_url,
            self.config.contexts_per_digest,
            timeout=max(deadline - time.monotonic(), 0.1),
            auth=self.config.exporter_auth,
        )

    def _charts(
        self,
        plan: MailPlan,
        alerts: list[Alert | None],
        deadline: float,
        cancel: threading.Event | None,
    ) -> list[Chart | None]:
        """Each firing alert's chart (None for the others); never an error."""
        config = self.config
        charts: list[Chart | None] = [None] * len(alerts)
        firing = [index for index, alert in enumerate(alerts) if alert is not None]
        if not firing:
            return charts
        try:
            drawn = alert_charts(
                config.prometheus_url,
                [alerts[index] for index in firing],
                window=config.chart_window,
                budget=config.chart_budget,
                deadline=deadline,
                max_charts=config.charts_per_digest,
                cancel=cancel,
                auth=config.prometheus_auth,
                verify=config.prometheus_verify,
            )
        except Exception as exc:  # a chart is never worth a mail
            log.exception("charts for a %s mail failed", plan.kind)
            drawn = [Chart(None, f"graph unavailable: {type(exc).__name__}")] * len(firing)
        for index, chart in zip(firing, drawn, strict=True):
            charts[index] = chart
        return charts

    def mails(
        self,
        plan: MailPlan,
        now: float,
        charts: list[Chart | None] | None = None,
        contexts: list[ContainerContext | None] | None = None,
    ) -> list[NewMail]:
        """The plan's mail; without its graphs and links if those cannot be composed; when
        even that fails, one per alert, so only the alert that breaks composing is
        dead-lettered."""
        config = self.config
        plain = (config.sender, config.recipients, config.prometheus_url, now)
        try:
            mail = compose(
                plan,
                *plain,
                charts=charts,
                grafana_url=config.grafana_url,
                chart_window=config.chart_window,
                contexts=contexts,
            )
            return [_with_priority(mail, plan.priority)]
        except Exception:
            log.exception("cannot compose a %s mail with graphs and links; without", plan.kind)
        try:
            mail = compose(plan, *plain, actionable=False)
            return [_with_priority(mail, plan.priority)]
        except Exception as exc:
            if len(plan.entries) == 1:
                log.exception("cannot compose a %s mail", plan.kind)
                return [_with_priority(uncomposable(plan, repr(exc), now), plan.priority)]
        found = []
        for index, entry in enumerate(plan.entries):
            single = MailPlan(plan.kind, plan.severity, plan.resolved, [entry])
            found += self.mails(
                single,
                now,
                [charts[index]] if charts else None,
                [contexts[index]] if contexts else None,
            )
        return found


def _with_priority(mail: NewMail, priority: int) -> NewMail:
    return replace(mail, priority=priority)
