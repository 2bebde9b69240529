"""The application factory: `create_app(config)` wires settings, database, slots and metrics."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from flask import Flask, Response, g, jsonify, request

from dockpulse_webapp.config import WebappConfig
from dockpulse_webapp.database import Database, DatabaseUnavailable
from dockpulse_webapp.metrics import AppMetrics
from dockpulse_webapp.params import BadParameter
from dockpulse_webapp.slots import StressSlots
from dockpulse_webapp.views.status import status
from dockpulse_webapp.views.stress import stress

log = logging.getLogger("dockpulse_webapp")


def create_app(
    config: WebappConfig | None = None,
    *,
    database: Database | None = None,
    stress_slots: StressSlots | None = None,
) -> Flask:
    """A ready app; the schema is created now when the database answers, else on first use."""
    config = config or WebappConfig()
    app = Flask(__name__)
    app.extensions["webapp_config"] = config
    app.extensions["database"] = database or Database(
        config.database_url, config.db_pool_size, config.db_connect_timeout
    )
    if stress_slots is None:
        # The app's own slots (one process); removed with the app.
        slots_dir = tempfile.TemporaryDirectory(prefix="dockpulse-webapp-slots-")
        app.extensions["stress_slots_dir"] = slots_dir
        stress_slots = StressSlots(Path(slots_dir.name), config.max_concurrent_stress)
    app.extensions["stress_slots"] = stress_slots
    app.extensions["metrics"] = AppMetrics()
    app.register_blueprint(status)
    app.register_blueprint(stress)
    _measure_requests(app)
    _answer_errors_in_json(app)
    try:
        app.extensions["database"].ensure_schema()
    except DatabaseUnavailable as exc:
        log.warning("database not ready (%s); the schema is created on first use", exc)
    return app


def _measure_requests(app: Flask) -> None:
    @app.before_request
    def start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def record(response: Response) -> Response:
        started = g.get("started")
        if started is not None:
            endpoint = request.url_rule.rule if request.url_rule else "unmatched"
            seconds = time.perf_counter() - started
            app.extensions["metrics"].observe(
                endpoint, request.method, response.status_code, seconds
            )
        return response


def _answer_errors_in_json(app: Flask) -> None:
    @app.errorhandler(BadParameter)
    def bad_parameter(exc: BadParameter) -> tuple[Response, int]:
        return jsonify({"error": str(exc), "parameter": exc.name}), 400

    @app.errorhandler(404)
    def not_found(exc: Exception) -> tuple[Response, int]:
        return jsonify({"error": f"no such endpoint: {request.path}"}), 404

    @app.errorhandler(405)
    def wrong_method(exc: Exception) -> tuple[Response, int]:
        return jsonify({"error": f"method {request.method} not allowed here"}), 405
