"""`/stress/*`: endpoints that load the container on purpose, every parameter capped.

CPU, memory, database and slow requests each take one of the shared stress slots; past the
cap the app answers 429 at once instead of queueing work.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from dockpulse_webapp import load, params
from dockpulse_webapp.config import WebappConfig
from dockpulse_webapp.database import DatabaseUnavailable

stress = Blueprint("stress", __name__, url_prefix="/stress")


def _config() -> WebappConfig:
    return current_app.extensions["webapp_config"]


def _in_slot(kind: str, work: Callable[[], dict[str, Any]]) -> tuple[Response, int]:
    """Run `work` holding a stress slot; 429 when every slot is taken."""
    with current_app.extensions["stress_slots"].take() as got_slot:
        if not got_slot:
            limit = _config().max_concurrent_stress
            body = {"error": f"too many stress requests in progress (limit {limit})"}
            response = jsonify(body)
            response.headers["Retry-After"] = "1"
            return response, 429
        gauge = current_app.extensions["metrics"].stress_in_progress.labels(kind)
        gauge.inc()
        started = time.monotonic()
        try:
            result = work()
        finally:
            gauge.dec()
        return jsonify({"stress": kind, **result, "elapsed_seconds": _since(started)}), 200


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


@stress.get("/cpu")
def cpu() -> tuple[Response, int]:
    seconds = params.number(
        "seconds", minimum=0.001, maximum=_config().max_cpu_seconds, integer=False
    )
    intensity = int(params.number("intensity", minimum=1, maximum=100, default=100))
    return _in_slot(
        "cpu",
        lambda: {
            "seconds": seconds,
            "intensity": intensity,
            "hashes": load.burn_cpu(seconds, intensity),
        },
    )


@stress.get("/memory")
def memory() -> tuple[Response, int]:
    config = _config()
    mb = int(params.number("mb", minimum=1, maximum=config.max_memory_mb))
    seconds = params.number(
        "seconds", minimum=0, maximum=config.max_memory_seconds, default=10, integer=False
    )
    return _in_slot(
        "memory", lambda: {"mb": mb, "seconds": seconds, "bytes": load.hold_memory(mb, seconds)}
    )


@stress.get("/db")
def db() -> tuple[Response, int]:
    queries = int(params.number("queries", minimum=1, maximum=_config().max_db_queries))
    try:
        return _in_slot("db", lambda: current_app.extensions["database"].run_queries(queries))
    except DatabaseUnavailable as exc:
        return jsonify({"error": "database unavailable", "reason": str(exc)}), 503


@stress.get("/slow")
def slow() -> tuple[Response, int]:
    ms = int(params.number("ms", minimum=0, maximum=_config().max_slow_ms))

    def wait() -> dict[str, Any]:
        time.sleep(ms / 1000)
        return {"ms": ms}

    return _in_slot("slow", wait)


@stress.get("/error")
def error() -> tuple[Response, int]:
    return jsonify({"error": "deliberate failure, for the error-rate alerts"}), 500
