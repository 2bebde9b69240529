"""A small ring of recent events per container, from the event stream the watcher follows.

Kept by container name, so a container recreated under the same name (a deploy) keeps its
history and the ring can say "recreated from image sha256:... (was sha256:...)". Bounded:
`per_container` events each; a removed container's ring stays as a tombstone for
`tombstone_seconds` (so the mail can say "removed") and at most `max_tombstones` of them, the
oldest dropped first. Memory: about 200 bytes an event, so 1,000 containers x 20 events is a
few MB (bench/mail_context.py measures it).

    rings = EventRings()
    rings.record(event, container, peak_memory_bytes=...)   # from DockerWatcher's on_event
    rings.history("webapp")                                  # ContainerHistory or None
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dockpulse_exporter.model import Container

# Docker's container actions worth remembering (health_status comes as "health_status: x").
KEPT_ACTIONS = frozenset(
    {"create", "start", "restart", "die", "oom", "kill", "stop", "pause", "unpause", "destroy"}
)


@dataclass(frozen=True, slots=True)
class ContainerEvent:
    time: float  # unix seconds
    action: str  # die, oom, kill, restart, health_status, recreated, destroy, ...
    detail: str = ""  # "exit code 1", "signal 9", "unhealthy", "from image sha256:..."

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time, "action": self.action, "detail": self.detail}


@dataclass(slots=True)
class ContainerHistory:
    """What the exporter remembers of one container name."""

    name: str
    container_id: str = ""
    image: str = ""
    image_id: str = ""
    events: deque[ContainerEvent] = field(default_factory=deque)
    removed_at: float | None = None
    memory_peak_bytes: int | None = None  # the highest the exporter sampled before it stopped


def _detail(action: str, attributes: dict[str, str]) -> str:
    if action == "die":
        return f"exit code {attributes.get('exitCode', '?')}"
    if action == "kill":
        return f"signal {attributes.get('signal', '?')}"
    return ""


class EventRings:
    """Per-container rings of recent events; thread-safe (the watcher writes, requests read)."""

    def __init__(
        self,
        per_container: int = 20,
        tombstone_seconds: float = 600.0,
        max_tombstones: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.per_container = per_container
        self.tombstone_seconds = tombstone_seconds
        self.max_tombstones = max_tombstones
        self.clock = clock
        self._by_name: dict[str, ContainerHistory] = {}
        self._tombstones: OrderedDict[str, float] = OrderedDict()  # name -> removed at
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._by_name)

    def record(
        self,
        event: dict[str, Any],
        container: Container | None,
        memory_peak_bytes: int | None = None,
    ) -> None:
        """Remember a Docker container event (`container`: its fresh inspect, None once gone)."""
        action = str(event.get("Action") or event.get("status") or "")
        actor = event.get("Actor") or {}
        attributes = {str(k): str(v) for k, v in (actor.get("Attributes") or {}).items()}
        name = (container.name if container else "") or attributes.get("name", "")
        detail = ""
        if action.startswith("health_status"):
            action, _, detail = action.partition(":")
            detail = detail.strip()
        elif action not in KEPT_ACTIONS or not name:
            return
        else:
            detail = _detail(action, attributes)
        nanos = event.get("timeNano")
        moment = int(nanos) / 1e9 if nanos else float(event.get("time") or self.clock())
        container_id = str(event.get("id") or actor.get("ID") or "")
        with self._lock:
            now = self.clock()
            self._expire(now)
            history = self._by_name.get(name)
            if history is None:
                history = ContainerHistory(name, events=deque(maxlen=self.per_container))
                self._by_name[name] = history
            if action == "create" and container is not None:
                self._created(history, container, moment)
                return
            if container is not None and not history.image_id:
                history.container_id, history.image = container.id, container.image
                history.image_id = container.image_id
            if memory_peak_bytes and action in ("die", "oom"):
                history.memory_peak_bytes = max(history.memory_peak_bytes or 0, memory_peak_bytes)
            history.events.append(ContainerEvent(moment, action, detail))
            if action == "destroy":
                history.removed_at = moment
                self._tombstones[name] = now  # expires by the exporter's clock
                self._tombstones.move_to_end(name)
                while len(self._tombstones) > self.max_tombstones:
                    self._by_name.pop(self._tombstones.popitem(last=False)[0], None)
            elif container_id and container_id != history.container_id:
                history.container_id = container_id

    def _created(self, history: ContainerHistory, container: Container, moment: float) -> None:
        """A new container under the name: "recreated from image ..." when the image changed."""
        previous = history.image_id
        if history.removed_at is not None:
            self._tombstones.pop(history.name, None)
            history.removed_at = None
        if previous and container.image_id and previous != container.image_id:
            detail = f"from image {container.image_id} (was {previous})"
            history.events.append(ContainerEvent(moment, "recreated", detail))
        elif not previous:
            history.events.append(ContainerEvent(moment, "create", f"image {container.image}"))
        history.container_id, history.image, history.image_id = (
            container.id,
            container.image,
            container.image_id,
        )
        history.memory_peak_bytes = None

    def _expire(self, now: float) -> None:
        while self._tombstones:
            name, removed_at = next(iter(self._tombstones.items()))
            if now - removed_at < self.tombstone_seconds:
                return
            del self._tombstones[name]
            self._by_name.pop(name, None)

    def history(self, name_or_id: str) -> ContainerHistory | None:
        """A copy of the container's history, by name or (a prefix of at least 12 of) its id."""
        with self._lock:
            self._expire(self.clock())
            found = self._by_name.get(name_or_id)
            if found is None and len(name_or_id) >= 12:
                found = next(
                    (h for h in self._by_name.values() if h.container_id.startswith(name_or_id)),
                    None,
                )
            if found is None:
                return None
            return ContainerHistory(
                found.name,
                found.container_id,
                found.image,
                found.image_id,
                deque(found.events),
                found.removed_at,
                found.memory_peak_bytes,
            )
