"""`dockpulse demo | down` helpers: the demo's settings file, Compose's exit status, and
stopping a Docker engine only when the demo started it (a `sleep` stands in for dockerd)."""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
from pathlib import Path

from dockpulse_stack.compose import compose_command
from dockpulse_stack.demo import ENGINE_MARKER, stop_started_engine, write_env_file
from dockpulse_stack.engine import Engine


def read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def test_settings_keep_their_secrets_and_name_the_engine_socket(tmp_path: Path) -> None:
    path = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        engine = Engine(host=f"unix://{path}")
        env_file = tmp_path / "demo" / "compose.env"
        write_env_file(env_file, engine, tmp_path / "outbox")
        first = read_env(env_file)
        write_env_file(env_file, engine, tmp_path / "outbox", {"WEBAPP_CPUS": "0.5"})
        second = read_env(env_file)
    assert env_file.stat().st_mode & 0o777 == 0o600
    for secret in ("POSTGRES_PASSWORD", "RELAY_AUTH_TOKEN", "GF_ADMIN_PASSWORD"):
        assert len(first[secret]) >= 24 and second[secret] == first[secret]
    assert first["DOCKER_SOCKET"] == str(path)
    assert first["DOCKER_GID"] == str(path.stat().st_gid)
    assert second["WEBAPP_CPUS"] == "0.5"
    # The web configs made from the secrets (what docker-compose.yaml's secrets name) load in
    # promtool, and each password file holds its server's secret.
    web = Path(second["DOCKPULSE_WEB_DIR"])
    configs = sorted(web.glob("*-web.yml"))
    assert [path.name for path in configs] == [
        "alertmanager-web.yml",
        "exporter-web.yml",
        "prometheus-web.yml",
    ]
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (apt-get install prometheus)"
    for config in configs:
        checked = subprocess.run(
            [promtool, "check", "web-config", str(config)], capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
    for server in ("prometheus", "alertmanager", "exporter"):
        password = (web / f"{server}_password").read_text().strip()
        assert password == second[f"{server.upper()}_PASSWORD"]
        header = base64.b64decode((web / f"{server}_basic_auth").read_text()).decode()
        assert header == f"dockpulse:{password}"


def test_compose_failures_are_not_swallowed(tmp_path: Path) -> None:
    result = subprocess.run(
        [*compose_command(), "--file", str(tmp_path / "missing.yaml"), "config"],
        capture_output=True,
    )
    assert result.returncode != 0


def fake_dockerd(state_dir: Path, marker_pid: int | None) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(["sleep", "60"])
    (state_dir / "dockerd.pid").write_text(f"{process.pid}")
    if marker_pid is not None:
        (state_dir / ENGINE_MARKER).write_text(f"{marker_pid or process.pid}\n")
    return process


def test_down_stops_the_engine_the_demo_started(tmp_path: Path) -> None:
    dockerd = fake_dockerd(tmp_path, marker_pid=0)
    stop_started_engine(tmp_path)
    assert dockerd.wait(timeout=5) == -15
    assert not (tmp_path / ENGINE_MARKER).exists()


def test_down_leaves_an_engine_it_did_not_start(tmp_path: Path) -> None:
    for marker_pid in (None, 1):  # no marker; a marker for another dockerd
        dockerd = fake_dockerd(tmp_path, marker_pid)
        stop_started_engine(tmp_path)
        assert dockerd.poll() is None
        dockerd.kill()
        dockerd.wait()
