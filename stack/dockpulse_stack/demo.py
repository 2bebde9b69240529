"""The whole stack under Docker Compose on this machine: `dockpulse demo`, `down`, `stress`.

`demo` finds or starts a Docker engine, pulls or builds the images (`images.pulled_or_built`),
writes the demo's settings and secrets to `.demo/` (git-ignored), runs the users'
docker-compose.yaml with the host-network override, prints where everything is and follows the
logs until Ctrl-C; the stack keeps running.
`down` stops the stack, and the private dockerd only when `demo` started it.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from types import FrameType

import docker
import requests

from dockpulse_stack.compose import PROJECT, Stack
from dockpulse_stack.demo_secrets import SECRET_NAMES, demo_secrets, forget_secrets
from dockpulse_stack.engine import (
    DEFAULT_STATE_DIR,
    Engine,
    discover_engine,
    engine_answers,
    unmount_leftovers,
)
from dockpulse_stack.errors import StackError
from dockpulse_stack.images import GRAFANA_IMAGE, RELAY, REPO_ROOT, pulled_or_built
from dockpulse_stack.ports import check_ports_free
from dockpulse_stack.web_access import write_web_configs

# Settings, secrets copy, outbox and engine record of the demo (DOCKPULSE_DEMO_DIR to move it).
DEMO_DIR = Path(os.environ.get("DOCKPULSE_DEMO_DIR", REPO_ROOT / ".demo"))
GRAFANA_URL = "http://127.0.0.1:3000"
GRAFANA_PASSWORD_FILE = "grafana-admin-password"  # in DEMO_DIR; the user is `admin`
# dockerd started by `dockpulse demo`: its pid, so `down` stops that one and nothing else.
ENGINE_MARKER = "started-by-dockpulse-demo"
ALERT_LOG = "/var/log/dockpulse/container_alerts.log"  # in the alert-relay container
# The host-network stack listens on fixed ports (its config files name them).
STACK_PORTS = {
    "postgres": 5432,
    "webapp": 8000,
    "exporter": 9487,
    "prometheus": 9090,
    "alertmanager": 9093,
    "alert-relay": 9095,
}

URLS = (
    ("Webapp (demo app)", "http://127.0.0.1:8000/"),
    ("Exporter metrics", "http://127.0.0.1:9487/metrics"),
    ("Prometheus", "http://127.0.0.1:9090/"),
    ("Alertmanager", "http://127.0.0.1:9093/"),
    ("Alert relay", "http://127.0.0.1:9095/metrics"),
    ("Locust (stress runs)", "http://127.0.0.1:8089/  metrics :9646, while `make stress` runs"),
)


def socket_path(engine_host: str) -> Path:
    if not engine_host.startswith("unix://"):
        raise StackError(f"the exporter needs the engine's unix socket; DOCKER_HOST={engine_host}")
    return Path(engine_host.removeprefix("unix://"))


def image_user_id(engine: Engine, image: str) -> int:
    """The uid an image runs as (to give it a folder on the host)."""
    result = subprocess.run(
        ["docker", "run", "--rm", "--network=none", "--entrypoint=id", image, "-u"],
        env=engine.env(),
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise StackError(f"cannot run {image}: {result.stderr.strip()}")
    return int(result.stdout.strip())


def docker_root_dir(engine: Engine, default: str = "/var/lib/docker") -> str:
    """Where the engine keeps its data (`docker info`'s DockerRootDir); `default` when it
    cannot tell."""
    try:
        with closing(engine.client(timeout=10)) as client:
            return str(client.info()["DockerRootDir"])
    except (docker.errors.DockerException, requests.RequestException):
        return default


def write_env_file(
    path: Path,
    engine: Engine,
    outbox: Path,
    settings: dict[str, str] | None = None,
    secret_values: dict[str, str] | None = None,
) -> None:
    """The Compose settings of a host-network stack: secrets (`secret_values`, else the file's,
    else new ones), the engine's socket and group for the exporter, the outbox folder, and the
    web configs and password files made from the secrets in `web/` beside `path`
    (DOCKPULSE_WEB_DIR); `settings` add or override."""
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key in SECRET_NAMES:
                values[key] = value
    values |= secret_values or {}
    for key in SECRET_NAMES:
        values.setdefault(key, secrets.token_urlsafe(24))
    socket = socket_path(engine.host)
    values |= {
        "DOCKER_SOCKET": str(socket),
        "DOCKER_GID": str(socket.stat().st_gid),
        "DOCKER_ROOT_DIR": docker_root_dir(engine),
        "OUTBOX_PATH": str(outbox),
        "DOCKPULSE_WEB_DIR": str(path.parent / "web"),
    }
    values |= settings or {}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_web_configs(Path(values["DOCKPULSE_WEB_DIR"]), values)
    path.touch(mode=0o600)
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))


def prepare_outbox(engine: Engine, outbox: Path) -> None:
    """The outbox folder on the host, writable by the relay's user, readable here. A normal
    user cannot give it to the relay's uid: it is then writable by all, which exposes nothing
    as long as its parent (the demo folder, mode 700) lets nobody else in."""
    outbox.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(outbox, image_user_id(engine, RELAY.tag), os.getgid())
        outbox.chmod(0o755)
    elif outbox.stat().st_uid == os.geteuid():
        outbox.chmod(0o777)


def record_engine(engine: Engine, demo_dir: Path) -> None:
    """Remember which engine the demo runs on, and whether the demo started it."""
    (demo_dir / "engine").write_text(engine.host + "\n")
    if engine.owned and engine.process is not None and engine.state_dir is not None:
        (engine.state_dir / ENGINE_MARKER).write_text(f"{engine.process.pid}\n")


def write_grafana_password(demo_dir: Path, password: str) -> Path:
    """Grafana's admin password in a file only this user can read; returns its path."""
    path = demo_dir / GRAFANA_PASSWORD_FILE
    path.touch(mode=0o600)
    path.write_text(password + "\n")
    return path


def grafana_line(password_file: Path | None) -> str:
    """The summary's Grafana line: where it is, or exactly what to do to have it."""
    if password_file is not None:
        return f"{GRAFANA_URL}/  (user admin, password in {password_file})"
    return (
        f"not started: {GRAFANA_IMAGE} could not be pulled; "
        f"run `docker pull {GRAFANA_IMAGE}`, then `make demo` again"
    )


def print_where(engine_host: str, outbox: Path, grafana_password: Path | None) -> None:
    lines = [f"  {label:<22} {url}" for label, url in URLS]
    lines.append(f"  {'Grafana':<22} {grafana_line(grafana_password)}")
    alert_log = f"docker exec {PROJECT}-alert-relay-1 tail -f {ALERT_LOG}"
    print("\ndockpulse: the stack is up.\n" + "\n".join(lines))
    print(f"\n  Credentials            user dockpulse, passwords in {DEMO_DIR / 'web'}/")
    print(f"  Alert mails (.eml)     {outbox}/")
    print(f"  Alert log (JSON)       {alert_log}")
    print(f"  Docker by hand         export DOCKER_HOST={engine_host}")
    print(f"  See an alert           docker kill {PROJECT}-webapp-1   (mail within ~15 s)")
    print("  Make load alerts fire  make stress PROFILE=cpu-intensive")
    print("  Stop everything        make down\n")
    sys.stdout.flush()


def follow_logs(stack: Stack) -> None:
    """Follow the services' logs until Ctrl-C or SIGTERM; the stack keeps running."""
    logs = subprocess.Popen(stack.command("logs", "--follow", "--tail=0"), env=stack.env())

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        logs.wait()
    except KeyboardInterrupt:
        logs.terminate()
        logs.wait()
    print("\ndockpulse: stopped following the logs; the stack keeps running (`make down`).")


def demo(follow: bool = True) -> int:
    started = time.monotonic()
    engine = discover_engine()
    DEMO_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    record_engine(engine, DEMO_DIR)
    print(f"dockpulse: Docker engine at {engine.host} ({engine.source})", file=sys.stderr)
    env_file = DEMO_DIR / "compose.env"
    running = {name for name, ready in Stack(engine.host, env_file).services().items() if ready}
    check_ports_free({name: port for name, port in STACK_PORTS.items() if name not in running})
    images = pulled_or_built(engine)
    stack = Stack(engine.host, env_file, profiles=("grafana",) if images.grafana else ())
    if images.grafana and "grafana" not in running:
        check_ports_free({"grafana": 3000})
    outbox = DEMO_DIR / "outbox"
    prepare_outbox(engine, outbox)
    secret_values = demo_secrets(engine, PROJECT)
    settings = dict(images.variables)
    grafana_password = None
    if images.grafana:
        settings["GRAFANA_URL"] = GRAFANA_URL  # the mails' dashboard links
        grafana_password = write_grafana_password(DEMO_DIR, secret_values["GF_ADMIN_PASSWORD"])
    write_env_file(env_file, engine, outbox, settings, secret_values)
    if running and running >= set(STACK_PORTS):
        print("dockpulse: the stack is already up; bringing up what changed", file=sys.stderr)
    print("dockpulse: starting the stack (docker-compose up --wait) ...", file=sys.stderr)
    up = stack.command("up", "--detach", "--wait", "--remove-orphans")
    if subprocess.run(up, env=stack.env()).returncode != 0:
        report = "\n".join(stack.not_ready()) or "every container runs; see the output above"
        raise StackError(f"the stack did not become healthy:\n{report}")
    print(f"dockpulse: up in {time.monotonic() - started:.0f}s", file=sys.stderr)
    print_where(engine.host, outbox, grafana_password)
    if follow:
        follow_logs(stack)
    return 0


def recorded_engine_host() -> str | None:
    """The engine the demo ran on, if it still answers."""
    recorded = DEMO_DIR / "engine"
    candidates = [recorded.read_text().strip()] if recorded.exists() else []
    candidates += [os.environ.get("DOCKER_HOST", ""), f"unix://{DEFAULT_STATE_DIR}/docker.sock"]
    return next((host for host in candidates if host and engine_answers(host)), None)


def stop_started_engine(state_dir: Path = DEFAULT_STATE_DIR) -> None:
    """Stop the private dockerd, only if `dockpulse demo` started it."""
    marker = state_dir / ENGINE_MARKER
    if not marker.exists():
        return
    pid = int(marker.read_text().split()[0])
    pidfile = state_dir / "dockerd.pid"
    running = pidfile.exists() and pidfile.read_text().strip() == str(pid)
    marker.unlink()
    if not running:
        return
    print(f"dockpulse: stopping the Docker engine the demo started (pid {pid})", file=sys.stderr)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process_alive(pid):
        time.sleep(0.3)
    unmount_leftovers(state_dir)


def process_alive(pid: int) -> bool:
    """True while `pid` runs (an exited child not yet reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def down(volumes: bool = False) -> int:
    host = recorded_engine_host()
    env_file = DEMO_DIR / "compose.env"
    if host is None:
        print("dockpulse: no Docker engine answers; nothing to stop", file=sys.stderr)
    elif not env_file.exists():
        print("dockpulse: no demo settings in .demo/; nothing to stop", file=sys.stderr)
    else:
        stack = Stack(host, env_file, profiles=("grafana", "stress"))
        stack.run("down", "--remove-orphans", *(["--volumes"] if volumes else []))
        if volumes:
            forget_secrets(Engine(host=host))
    stop_started_engine()
    return 0


def stress(profile: str, duration: str, workers: int = 0) -> int:
    """One load run against the demo stack (the `stress-generator` service), in the foreground;
    with `workers`, a Locust master and that many worker processes in its container."""
    host = recorded_engine_host()
    env_file = DEMO_DIR / "compose.env"
    if host is None or not env_file.exists():
        raise StackError("the demo stack is not running: start it with `make demo`")
    run_stress(Stack(host, env_file), profile, duration, workers)
    return 0


def run_stress(stack: Stack, profile: str, duration: str, workers: int = 0) -> None:
    """`stack`'s `stress-generator` service once, in the foreground, until the run ends."""
    print(f"dockpulse: {profile} load for {duration}; watch it at http://127.0.0.1:8089/")
    sys.stdout.flush()
    environment = ["-e", f"STRESS_LEVEL={profile}", "-e", f"LOCUST_RUN_TIME={duration}"]
    environment += ["-e", f"LOADTEST_WORKERS={workers}"]
    stack = replace(stack, profiles=(*stack.profiles, "stress"))
    stack.run("run", "--rm", *environment, "stress-generator")
