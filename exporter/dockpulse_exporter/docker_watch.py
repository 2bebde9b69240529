"""Keeping the list of containers fresh from Docker's event stream (read-only API calls only).

A full listing happens at start, after every reconnect and every `resync_interval`; in between,
each container event re-inspects just that container. When the engine goes away, `docker_up`
turns false and the watcher reconnects with backoff; it never raises out of its thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import docker
import requests

from dockpulse_exporter.model import Container

log = logging.getLogger(__name__)

DOCKER_ERRORS = (docker.errors.DockerException, requests.RequestException, OSError, ValueError)
_NEVER = "0001-01-01T00:00:00Z"


def _unix_time(stamp: str | None) -> float:
    """Docker's RFC 3339 timestamps (nanosecond precision) as unix seconds; 0 for 'never'."""
    if not stamp or stamp.startswith(_NEVER[:4]):
        return 0.0
    main, _, fraction = stamp.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(main + "+00:00").timestamp()
    if fraction:
        digits = "".join(ch for ch in fraction if ch.isdigit())[:9]
        seconds += int(digits) / 10 ** len(digits) if digits else 0.0
    return seconds


def container_from_inspect(data: dict[str, Any]) -> Container:
    """A Container from `docker inspect` output."""
    state = data.get("State") or {}
    config = data.get("Config") or {}
    host = data.get("HostConfig") or {}
    quota = int(host.get("CpuQuota") or 0)
    period = int(host.get("CpuPeriod") or 0) or 100_000
    nano_cpus = int(host.get("NanoCpus") or 0)
    if quota <= 0 and nano_cpus > 0:
        quota = nano_cpus * period // 1_000_000_000
    health = (state.get("Health") or {}).get("Status") or "none"
    return Container(
        id=data["Id"],
        name=data.get("Name", "").lstrip("/"),
        image=config.get("Image") or data.get("Image", ""),
        labels=dict(config.get("Labels") or {}),
        state=state.get("Status", "unknown"),
        pid=int(state.get("Pid") or 0),
        exit_code=int(state.get("ExitCode") or 0),
        oom_killed=bool(state.get("OOMKilled")),
        restart_count=int(data.get("RestartCount") or 0),
        health=health,
        started_at=_unix_time(state.get("StartedAt")),
        network_mode=host.get("NetworkMode") or "",
        cgroup_parent=host.get("CgroupParent") or "",
        memory_limit_bytes=int(host.get("Memory") or 0),
        cpu_quota_us=max(quota, 0),
        cpu_period_us=period if quota > 0 else 0,
        memory_reservation_bytes=int(host.get("MemoryReservation") or 0),
        address=_address(data.get("NetworkSettings") or {}),
        image_id=str(data.get("Image") or ""),
    )


def _address(network: dict[str, Any]) -> str:
    """The container's IP: the default bridge's, else its first network's that has one."""
    if network.get("IPAddress"):
        return str(network["IPAddress"])
    for attached in (network.get("Networks") or {}).values():
        if (attached or {}).get("IPAddress"):
            return str(attached["IPAddress"])
    return ""


ContainerEventHook = Callable[[dict[str, Any], Container | None], None]


class DockerWatcher:
    """Holds the current containers by id; `on_change` is called after every update and
    `on_event` (if any) with each container event and the container's fresh inspect."""

    def __init__(
        self,
        docker_host: str,
        resync_interval: float,
        on_change: Callable[[], None],
        api_timeout: float = 10.0,
        on_event: ContainerEventHook | None = None,
    ) -> None:
        self.docker_host = docker_host
        self.resync_interval = resync_interval
        self.on_change = on_change
        self.api_timeout = api_timeout
        self.on_event = on_event
        self._containers: dict[str, Container] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.docker_up = False
        self.cgroup_driver = ""  # `docker info`'s CgroupDriver (systemd, cgroupfs), "" until read
        self.errors_total = 0
        self._client: docker.APIClient | None = None

    def containers(self) -> list[Container]:
        with self._lock:
            return list(self._containers.values())

    def containers_by_id(self) -> dict[str, Container]:
        with self._lock:
            return dict(self._containers)

    @property
    def api(self) -> docker.APIClient | None:
        return self._client

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Resync, follow events until the window ends or the stream breaks; repeat."""
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._client = self._client or docker.APIClient(
                    base_url=self.docker_host, timeout=self.api_timeout
                )
                since = time.time()
                self.resync(self._client, full=not self.docker_up)
                backoff = 0.5
                self._follow_events(self._client, since, since + self.resync_interval)
            except DOCKER_ERRORS as exc:
                self.errors_total += 1
                if self.docker_up:
                    log.warning("lost the Docker engine at %s: %s", self.docker_host, exc)
                self._set_docker_up(False)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _set_docker_up(self, up: bool) -> None:
        if up != self.docker_up:
            self.docker_up = up
            self.on_change()

    def resync(self, client: docker.APIClient, full: bool = True) -> None:
        """List all containers; inspect each (`full`) or only those new or changed in state."""
        if full:
            self.cgroup_driver = str(client.info().get("CgroupDriver") or "")
        known = self.containers_by_id()
        fresh: dict[str, Container] = {}
        for summary in client.containers(all=True):
            container_id = summary["Id"]
            cached = known.get(container_id)
            if not full and cached is not None and cached.state == summary.get("State"):
                fresh[container_id] = cached
                continue
            container = self._inspect(client, container_id)
            if container is not None:
                fresh[container_id] = container
        with self._lock:
            self._containers = fresh
        if not self.docker_up:
            log.info("Docker engine at %s is up; %d containers", self.docker_host, len(fresh))
        self.docker_up = True
        self.on_change()

    @staticmethod
    def _inspect(client: docker.APIClient, container_id: str) -> Container | None:
        try:
            return container_from_inspect(client.inspect_container(container_id))
        except docker.errors.NotFound:
            return None

    def _follow_events(self, client: docker.APIClient, since: float, until: float) -> None:
        events = client.events(
            since=int(since), until=int(until) + 1, filters={"type": "container"}, decode=True
        )
        for event in events:
            if self._stop.is_set():
                return
            self._apply_event(client, event)

    def _apply_event(self, client: docker.APIClient, event: dict[str, Any]) -> None:
        action = str(event.get("Action") or event.get("status") or "")
        container_id = event.get("id") or (event.get("Actor") or {}).get("ID")
        if not container_id or action.startswith(("exec_", "top", "attach", "resize")):
            return
        container = None if action == "destroy" else self._inspect(client, container_id)
        with self._lock:
            fresh = dict(self._containers)
            if container is None:
                fresh.pop(container_id, None)
            else:
                fresh[container_id] = container
            self._containers = fresh
        if self.on_event is not None:
            try:
                self.on_event(event, container)
            except Exception:  # the history is never worth the container list
                log.exception("recording a %s event failed", action)
        self.on_change()
