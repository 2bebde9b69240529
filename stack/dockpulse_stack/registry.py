"""Pulling an image through the engine, with a progress line, and what a failed pull means.

A pull that fails because no registry answers (no network, no DNS, a mirror that is down and no
way past it) is a reason to build the image here instead: `pull` returns False. A pull the
registry refuses (authentication, rate limit, unknown manifest) or the engine cannot finish
(disk full) is the user's to fix: StackError naming the image and the reason.
"""

from __future__ import annotations

import sys
import time
from contextlib import closing

import docker
import requests

from dockpulse_stack.engine import Engine
from dockpulse_stack.errors import StackError

# What dockerd (Go's net/http and resolver) says when it cannot reach a registry at all.
UNREACHABLE = (
    "dial tcp",
    "no such host",
    "connection refused",
    "i/o timeout",
    "network is unreachable",
    "no route to host",
    "tls handshake timeout",
    "client.timeout exceeded",
    "server misbehaving",
    "temporary failure in name resolution",
    "proxyconnect tcp",
)
PROGRESS_EVERY = 5.0  # seconds between progress lines
MEGABYTE = 1_000_000


def registry_unreachable(reason: str) -> bool:
    """True when a pull's error says no registry answered (rather than one refusing)."""
    lowered = reason.lower()
    return any(sign in lowered for sign in UNREACHABLE)


def pull(engine: Engine, name: str, timeout: int = 600) -> bool:
    """Pull `name` (repository:tag), printing its progress; True once pulled, False when no
    registry answers; StackError naming the image and the reason for any other failure."""
    repository, _, tag = name.rpartition(":")
    print(f"dockpulse: pulling {name} ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        with closing(engine.client(timeout=timeout)) as client:
            layers = report_progress(
                name, client.api.pull(repository, tag, stream=True, decode=True)
            )
    except docker.errors.APIError as exc:
        reason = str(exc.explanation or exc)
    except requests.RequestException as exc:
        reason = str(exc)
    else:
        if isinstance(layers, str):
            reason = layers
        else:
            elapsed = time.monotonic() - started
            fetched = f"{layers} layers downloaded" if layers else "up to date"
            print(f"dockpulse: pulled {name} ({fetched}) in {elapsed:.1f}s", file=sys.stderr)
            return True
    if registry_unreachable(reason):
        return False
    raise StackError(f"pulling {name} failed: {' '.join(reason.split())}")


def report_progress(name: str, events: object) -> int | str:
    """Follow a pull's event stream, a line every PROGRESS_EVERY seconds (megabytes downloaded
    of those known so far, layers done); returns how many layers were downloaded, or the
    stream's error."""
    downloaded: dict[str, tuple[int, int]] = {}
    layers: set[str] = set()
    done: set[str] = set()
    existing: set[str] = set()
    last = time.monotonic()
    for event in events:  # type: ignore[attr-defined]
        if "error" in event:
            return str(event["error"])
        layer = event.get("id", "")
        status = event.get("status", "")
        if status in ("Pulling fs layer", "Already exists", "Waiting"):
            layers.add(layer)
        if status in ("Pull complete", "Already exists"):
            done.add(layer)
        if status == "Already exists":
            existing.add(layer)
        detail = event.get("progressDetail") or {}
        if status == "Downloading" and detail.get("total"):
            downloaded[layer] = (int(detail.get("current", 0)), int(detail["total"]))
        if time.monotonic() - last >= PROGRESS_EVERY:
            last = time.monotonic()
            current = sum(part for part, _ in downloaded.values()) / MEGABYTE
            total = sum(size for _, size in downloaded.values()) / MEGABYTE
            print(
                f"dockpulse:   ... {name}: {current:.0f} of {total:.0f} MB downloaded, "
                f"{len(done)} of {len(layers)} layers done",
                file=sys.stderr,
                flush=True,
            )
    return len(done - existing)
