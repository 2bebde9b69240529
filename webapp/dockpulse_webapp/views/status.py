"""`/` (what is here), `/health` (app + database) and `/metrics` (the app's own metrics)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from dockpulse_webapp.database import DatabaseUnavailable

status = Blueprint("status", __name__)

ENDPOINTS = (
    ("/health", "200 when the app and its database answer, 503 with the reason otherwise"),
    ("/metrics", "the app's request count and latency by endpoint and status (Prometheus)"),
    ("/stress/cpu?seconds=5&intensity=100", "burn CPU for that long (intensity: % of one core)"),
    ("/stress/memory?mb=200&seconds=10", "hold that much memory for that long, then free it"),
    ("/stress/db?queries=500", "run that many real queries and inserts against PostgreSQL"),
    ("/stress/slow?ms=1500", "answer after that delay"),
    ("/stress/error", "answer 500"),
)


@status.get("/")
def index() -> Response:
    items = "\n".join(
        f'    <li><a href="{path}"><code>{path}</code></a>: {what}</li>' for path, what in ENDPOINTS
    )
    page = (
        "<!doctype html>\n<html><head><title>dockpulse demo app</title></head><body>\n"
        "  <h1>dockpulse demo app</h1>\n"
        "  <p>A Flask + PostgreSQL app to load on purpose and watch the monitoring react.</p>\n"
        f"  <ul>\n{items}\n  </ul>\n</body></html>\n"
    )
    return Response(page, mimetype="text/html")


@status.get("/health")
def health() -> tuple[Response, int]:
    try:
        current_app.extensions["database"].ping()
    except DatabaseUnavailable as exc:
        body = {"status": "unavailable", "database": "unreachable", "reason": str(exc)}
        return jsonify(body), 503
    return jsonify({"status": "ok", "database": "ok"}), 200


@status.get("/metrics")
def metrics() -> Response:
    body, content_type = current_app.extensions["metrics"].exposition()
    return Response(body, content_type=content_type)
