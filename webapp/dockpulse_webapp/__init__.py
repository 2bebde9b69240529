"""The monitored demo app: Flask + PostgreSQL with endpoints that really load its container.

`create_app` is imported lazily: the CLI must choose prometheus_client's multiprocess mode
before anything imports prometheus_client.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from dockpulse_webapp.app import create_app

        return create_app
    raise AttributeError(f"module 'dockpulse_webapp' has no attribute {name!r}")
