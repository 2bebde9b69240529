"""The demo's secrets live on the Docker engine, beside the volumes they belong to.

A new clone, a deleted `.demo/` or a second checkout on the same machine must still find the
password the PostgreSQL volume was initialised with. So the secrets are recorded as labels of a
small volume of their own (`dockpulse-demo-secrets`) on the engine, and `.demo/compose.env` is only
a copy made from it. They live and die together: `dockpulse down --volumes` removes both, and data
volumes found without a record of their secrets (left by an older version, or the record removed
by hand) are removed with a message, never left to a failing health check.

The labels are visible to whoever can use the Docker socket, as the containers' environments are.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys

from dockpulse_stack.engine import Engine
from dockpulse_stack.errors import StackError

# The web configs' passwords (web_access.py) are not bound to any volume: a record made
# before them gains them without the data volumes being removed.
WEB_SECRET_NAMES = ("PROMETHEUS_PASSWORD", "ALERTMANAGER_PASSWORD", "EXPORTER_PASSWORD")
SECRET_NAMES = ("POSTGRES_PASSWORD", "RELAY_AUTH_TOKEN", "GF_ADMIN_PASSWORD", *WEB_SECRET_NAMES)
RECORD_VOLUME = "dockpulse-demo-secrets"
LABEL_PREFIX = "org.dockpulse.demo.secret."


def _docker(engine: Engine, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], env=engine.env(), capture_output=True, text=True)


def recorded_secrets(engine: Engine) -> dict[str, str] | None:
    """The secrets recorded on the engine, None when there is no record."""
    result = _docker(engine, "volume", "inspect", RECORD_VOLUME)
    if result.returncode != 0:
        return None
    labels = json.loads(result.stdout)[0].get("Labels") or {}
    found = {key.removeprefix(LABEL_PREFIX): value for key, value in labels.items()}
    return {name: found[name] for name in SECRET_NAMES if name in found}


def project_volumes(engine: Engine, project: str) -> list[str]:
    """The named volumes Compose made for `project`."""
    result = _docker(
        engine, "volume", "ls", "--quiet", "--filter", f"label=com.docker.compose.project={project}"
    )
    return result.stdout.split()


def remove_volumes(engine: Engine, volumes: list[str]) -> None:
    result = _docker(engine, "volume", "rm", *volumes)
    if result.returncode != 0:
        raise StackError(
            f"cannot remove the volumes {', '.join(volumes)}: {result.stderr.strip()} "
            "(stop the containers using them with `make down`, then try again)"
        )


def demo_secrets(engine: Engine, project: str) -> dict[str, str]:
    """The demo's secrets: the recorded ones, or new ones recorded now (after removing data
    volumes that were made with secrets nobody knows any more)."""
    recorded = recorded_secrets(engine)
    if recorded is not None and set(recorded) == set(SECRET_NAMES):
        return recorded
    if recorded is not None and set(recorded) >= set(SECRET_NAMES) - set(WEB_SECRET_NAMES):
        remove_volumes(engine, [RECORD_VOLUME])
        return record_secrets(engine, recorded)
    stale = project_volumes(engine, project)
    if stale:
        print(
            "dockpulse: the demo's data volumes on this engine were made with secrets that are "
            f"no longer recorded (an older dockpulse, or {RECORD_VOLUME} removed); removing "
            f"them so the demo starts clean: {', '.join(stale)}",
            file=sys.stderr,
        )
        remove_volumes(engine, stale)
    if recorded is not None:
        remove_volumes(engine, [RECORD_VOLUME])
    return record_secrets(engine, {})


def record_secrets(engine: Engine, known: dict[str, str]) -> dict[str, str]:
    """Record `known` and a new value for every other secret; all of them."""
    fresh = {name: known.get(name) or secrets.token_urlsafe(24) for name in SECRET_NAMES}
    labels = [
        arg for name, value in fresh.items() for arg in ("--label", f"{LABEL_PREFIX}{name}={value}")
    ]
    result = _docker(engine, "volume", "create", *labels, RECORD_VOLUME)
    if result.returncode != 0:
        raise StackError(f"cannot record the demo's secrets on the engine: {result.stderr.strip()}")
    return fresh


def forget_secrets(engine: Engine) -> None:
    """Remove the record (with the data volumes: `dockpulse down --volumes`)."""
    _docker(engine, "volume", "rm", RECORD_VOLUME)
