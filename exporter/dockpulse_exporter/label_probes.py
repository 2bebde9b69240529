"""Probes declared by Docker labels (as Traefik and Prometheus' docker_sd read labels).

A container labelled `dockpulse.probe.url=http://127.0.0.1:8000/health`, or
`dockpulse.probe.port=8000` (+ `dockpulse.probe.path`, `dockpulse.probe.scheme`), is probed
under its container's name (or `dockpulse.probe.name`) while it exists. A port is resolved to an
address the exporter can reach: 127.0.0.1 on the host network, else the container's IP (or that
of the container whose network it shares). Other probe settings are labels too:
`dockpulse.probe.interval=10s`, `dockpulse.probe.expected_status=200,204`... A bad label is logged
once, naming the container and the label; the container is still monitored, just not probed.
A container is probed from its start; stopped, it keeps its probe (failing) until removed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from dockpulse_exporter.config import Probe
from dockpulse_exporter.model import Container
from dockpulse_exporter.probes import ProbeTarget

log = logging.getLogger(__name__)

PREFIX = "dockpulse.probe."
# Labels that build the URL; every other dockpulse.probe.<setting> is the Probe field <setting>.
ADDRESS_LABELS = ("url", "port", "path", "scheme")
LIST_SETTINGS = {
    "expected_status",
    "fail_if_body_matches_regexp",
    "fail_if_body_not_matches_regexp",
}
SETTINGS = {
    "interval",
    "timeout",
    "slow_threshold",
    "method",
    "body",
    "tls",
    "insecure_skip_verify",
    *LIST_SETTINGS,
}


class LabelProbes:
    """Turns the current containers into probe targets; remembers what it has logged."""

    def __init__(self) -> None:
        self._warned: set[tuple[str, str, str]] = set()
        self._built: dict[str, tuple[tuple[Any, ...], ProbeTarget | None]] = {}

    def targets(self, containers: Iterable[Container], taken: set[str]) -> list[ProbeTarget]:
        """One target per labelled container; names in `taken` (the file's probes) win, and
        between containers the first by name wins."""
        by_id = {container.id: container for container in containers}
        found: dict[str, ProbeTarget] = {}
        built: dict[str, tuple[tuple[Any, ...], ProbeTarget | None]] = {}
        for container in sorted(by_id.values(), key=lambda c: c.name):
            labels = {
                k[len(PREFIX) :]: v for k, v in container.labels.items() if k.startswith(PREFIX)
            }
            if not labels:
                continue
            target = self._target(container, labels, by_id, built)
            if target is None:
                continue
            name = target.probe.name
            if name in taken or name in found:
                self._warn(container, "name", name, "another probe has that name; not probed")
                continue
            found[name] = target
        self._built = built
        self._warned = {key for key in self._warned if key[0] in by_id}  # gone: may log again
        return list(found.values())

    def _target(
        self,
        container: Container,
        labels: dict[str, str],
        by_id: dict[str, Container],
        built: dict[str, tuple[tuple[Any, ...], ProbeTarget | None]],
    ) -> ProbeTarget | None:
        previous = self._built.get(container.id)
        if not container.running:  # probed from its start; once stopped, where it was (fails)
            if previous is not None:
                built[container.id] = previous
            return previous[1] if previous is not None else None
        address = reachable_address(container, by_id)
        key = (container.name, tuple(sorted(labels.items())), address)
        if previous is not None and previous[0] == key:
            built[container.id] = previous
            return previous[1]
        target = self._build(container, labels, address)
        built[container.id] = (key, target)
        return target

    def _build(
        self, container: Container, labels: dict[str, str], address: str | None
    ) -> ProbeTarget | None:
        unknown = sorted(set(labels) - {*ADDRESS_LABELS, *SETTINGS, "name"})
        for setting in unknown:
            self._warn(container, setting, labels[setting], "is not a probe setting; ignored")
        url = self._url(container, labels, address)
        if url is None:
            return None
        fields: dict[str, Any] = {"name": labels.get("name", container.name), "url": url}
        for setting in SETTINGS & set(labels):
            value = labels[setting].strip()
            fields[setting] = (
                [v.strip() for v in value.split(",")] if setting in LIST_SETTINGS else value
            )
        try:
            return ProbeTarget(Probe(**fields), container.name)
        except ValidationError as error:
            for problem in error.errors():
                setting = str(problem["loc"][0]) if problem["loc"] else "url"
                if setting == "url" and "url" not in labels:
                    setting = "port"
                value = labels.get(setting, str(fields.get(setting, "")))
                self._warn(container, setting, value, f"{problem['msg']}; not probed")
            return None

    def _url(self, container: Container, labels: dict[str, str], address: str | None) -> str | None:
        if "url" in labels:
            for ignored in ("port", "path", "scheme"):
                if ignored in labels:
                    self._warn(container, ignored, labels[ignored], "ignored: url is set")
            return labels["url"].strip()
        if "port" not in labels:
            self._warn(container, "url", "", "missing: set dockpulse.probe.url or .port")
            return None
        port = labels["port"].strip()
        if not port.isdigit() or not 0 < int(port) < 65536:
            self._warn(container, "port", port, "is not a port number; not probed")
            return None
        if address is None:
            self._warn(
                container,
                "port",
                port,
                f"no address the exporter can reach (network {container.network_mode or '?'}); "
                "set dockpulse.probe.url",
            )
            return None
        scheme = labels.get("scheme", "http").strip()
        path = labels.get("path", "/").strip() if scheme != "tcp" else ""
        host = f"[{address}]" if ":" in address else address
        return f"{scheme}://{host}:{port}{path if path.startswith('/') or not path else '/' + path}"

    def _warn(self, container: Container, setting: str, value: str, problem: str) -> None:
        key = (container.id, setting, value)
        if key not in self._warned:
            self._warned.add(key)
            log.warning(
                "container %s: label %s%s=%r %s", container.name, PREFIX, setting, value, problem
            )


def reachable_address(container: Container, by_id: dict[str, Container]) -> str | None:
    """Where the exporter reaches `container`: 127.0.0.1 on the host network, its IP, or the
    address of the container whose network namespace it joined; None when it has none."""
    mode = container.network_mode
    if mode == "host":
        return "127.0.0.1"
    if mode.startswith("container:"):
        owner = by_id.get(mode.partition(":")[2])
        if owner is None or owner.network_mode.startswith("container:"):
            return None
        return reachable_address(owner, by_id)
    return container.address or None
