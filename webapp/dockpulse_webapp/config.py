"""The webapp's settings: `--config.file` YAML, then environment variables, then flags.

The caps bound what one request may ask for, so no request can take the host down.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from dockpulse.settings import Duration, ListenAddress, load_settings

DEFAULT_LISTEN_ADDRESS = "127.0.0.1:8000"
DEFAULT_DATABASE_URL = "postgresql://dockpulse@127.0.0.1:5432/dockpulse"

# Environment variable -> field; the file and the flags use the field names.
ENVIRONMENT = {
    "DATABASE_URL": "database_url",
    "WEBAPP_LISTEN_ADDRESS": "listen_address",
    "WEBAPP_WORKERS": "workers",
    "WEBAPP_THREADS": "threads",
    "WEBAPP_DB_POOL_SIZE": "db_pool_size",
    "WEBAPP_DB_CONNECT_TIMEOUT": "db_connect_timeout",
    "WEBAPP_MAX_CPU_SECONDS": "max_cpu_seconds",
    "WEBAPP_MAX_MEMORY_MB": "max_memory_mb",
    "WEBAPP_MAX_MEMORY_SECONDS": "max_memory_seconds",
    "WEBAPP_MAX_DB_QUERIES": "max_db_queries",
    "WEBAPP_MAX_SLOW_MS": "max_slow_ms",
    "WEBAPP_MAX_CONCURRENT_STRESS": "max_concurrent_stress",
}


class WebappConfig(BaseModel):
    """Everything `create_app` and the gunicorn runner need."""

    model_config = ConfigDict(extra="forbid")

    listen_address: ListenAddress = DEFAULT_LISTEN_ADDRESS
    database_url: str = DEFAULT_DATABASE_URL
    workers: int = Field(2, ge=1, le=64)
    threads: int = Field(8, ge=1, le=256)
    db_pool_size: int = Field(8, ge=1, le=100, description="connections per worker process")
    db_connect_timeout: Duration = 2.0
    max_cpu_seconds: float = Field(30.0, gt=0, le=3600)
    max_memory_mb: int = Field(512, ge=1, le=65536)
    max_memory_seconds: float = Field(60.0, gt=0, le=3600)
    max_db_queries: int = Field(10000, ge=1, le=10_000_000)
    max_slow_ms: int = Field(30000, ge=0, le=3_600_000)
    max_concurrent_stress: int = Field(
        4, ge=1, le=1024, description="stress requests in progress at once, all workers together"
    )

    def longest_request_seconds(self) -> float:
        """The longest a capped request may legitimately take (for the worker timeout)."""
        return max(self.max_cpu_seconds, self.max_memory_seconds, self.max_slow_ms / 1000)


def load_config(config_file: str | Path | None, flags: dict[str, object]) -> WebappConfig:
    """Validated settings; ConfigError names the bad field and its variable."""
    return load_settings(WebappConfig, config_file, ENVIRONMENT, flags)
