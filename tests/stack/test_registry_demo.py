"""`dockpulse demo` on the user's own engine with a registry, as a normal user in the docker group.

Real parts only: Debian's `docker-registry` (distribution v2) on 127.0.0.1 holds the upstream
images under their upstream names (their stand-ins, built here from Debian packages as
`make demo` builds them offline, and pushed from the test engine); a dockerd on
/var/run/docker.sock (group docker) pulls Docker Hub's images through it as its
`--registry-mirror`; a non-root user runs `dockpulse demo` and `dockpulse down` through
`runuser`. The users' engine keeps its data root across runs (its build cache makes a warm
run's project images quick); the upstream images are removed from it first, so each run pulls
them again. With the mirror stopped, the image step falls back to Debian builds, per image.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from dockpulse_stack.compose import Stack
from dockpulse_stack.engine import DEFAULT_SOCKET, Engine, start_private_dockerd
from dockpulse_stack.errors import StackError
from dockpulse_stack.images import (
    GRAFANA_IMAGE,
    POSTGRES,
    PROMETHEUS,
    PYTHON_IMAGE,
    UPSTREAM_IMAGES,
    plan_images,
)
from dockpulse_stack.registry import pull
from dockpulse_stack.rootfs import PYTHON_BASE_TAG, busybox_image
from testkit.registry import Mirror, docker, mirror_path, push_stand_ins, running_mirror
from tests.stack.conftest import USER as WEB_USER
from tests.stack.test_users_engine import USER, as_user, dockerd_pids

pytestmark = [pytest.mark.docker, pytest.mark.users_host]

CACHE = Path.home() / ".cache" / "dockpulse"
STAND_INS = {
    image.name: image.stand_in.tag if image.stand_in else PYTHON_BASE_TAG
    for image in UPSTREAM_IMAGES
}
# A Docker Hub mirror serves Docker Hub's images only: the socket proxy's (ghcr.io) is loaded
# into the user's engine instead, as if they had pulled it.
NOT_MIRRORED = {name: tag for name, tag in STAND_INS.items() if name.startswith("ghcr.io/")}
MIRRORED = {name: tag for name, tag in STAND_INS.items() if name not in NOT_MIRRORED}
DEBIAN_ROOTFS_TAGS = {
    PYTHON_BASE_TAG,
    *(i.debian_base[0] for i in (PROMETHEUS, POSTGRES) if i.debian_base),
}
USERS_CONTAINER = "users-own-app"
PRIVATE_ENGINE_DIR = "/tmp/dockpulse-engine"  # where the user's demo would start its own dockerd


@pytest.fixture(scope="module")
def mirror(engine: Engine, stack_images: None, python_base: str) -> Iterator[Mirror]:
    """The registry, its storage cached across runs, holding every stand-in."""
    with running_mirror(CACHE / "registry-mirror") as mirror:
        push_stand_ins(engine, mirror.address, MIRRORED)
        yield mirror


@pytest.fixture(scope="module")
def users_engine(engine: Engine, mirror: Mirror) -> Iterator[Engine]:
    """dockerd on the default socket (root:docker, 660) pulling through the mirror; its data
    root is cached across runs, its containers and the upstream images removed first."""
    if DEFAULT_SOCKET.exists():
        pytest.fail(f"{DEFAULT_SOCKET} exists before the test: another engine runs here")
    subprocess.run(["groupadd", "-f", "docker"], check=True)
    state = Path(tempfile.mkdtemp(prefix="dp-reg-", dir="/tmp"))
    users = start_private_dockerd(
        state,
        socket=DEFAULT_SOCKET,
        group="docker",
        mirrors=(f"http://{mirror.address}",),
        data_root=CACHE / "users-engine",
    )
    try:
        leftover = docker(users.host, "ps", "--all", "--quiet").stdout.split()
        if leftover:
            docker(users.host, "rm", "--force", "--volumes", *leftover)
        # Every volume (`volume prune --all` needs API 1.42; Docker 20.10 has 1.41): a run
        # does not start on the last one's Prometheus data (prometheus/rules/containers.yml
        # on why that matters; its promtool tests cover it).
        volumes = docker(users.host, "volume", "ls", "--quiet").stdout.split()
        if volumes:
            docker(users.host, "volume", "rm", "--force", *volumes)
        docker(users.host, "rmi", *STAND_INS, GRAFANA_IMAGE)
        for name, tag in NOT_MIRRORED.items():
            saved = subprocess.run(
                ["docker", "save", tag], env={**os.environ, "DOCKER_HOST": engine.host},
                capture_output=True, check=True,
            )  # fmt: skip
            subprocess.run(
                ["docker", "load"], input=saved.stdout, capture_output=True, check=True,
                env={**os.environ, "DOCKER_HOST": users.host},
            )  # fmt: skip
            docker(users.host, "tag", tag, name)
        yield users
    finally:
        users.stop()
        shutil.rmtree(state, ignore_errors=True)
        DEFAULT_SOCKET.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def user(users_engine: Engine) -> Iterator[Path]:
    """The docker-group user; yields their home."""
    subprocess.run(["userdel", "--remove", USER], capture_output=True)
    subprocess.run(["useradd", "--create-home", "--groups", "docker", USER], check=True)
    try:
        yield Path(os.path.expanduser(f"~{USER}"))
    finally:
        subprocess.run(["userdel", "--remove", USER], capture_output=True)


def dockerds_of_the_demo(others: set[int]) -> list[str]:
    """dockerd processes besides `others` that the demo could have started: the user's own, or
    on its private state folder (other dockerds may come and go: the machine is shared)."""
    found = []
    for pid in dockerd_pids() - others:
        try:
            owner = Path(f"/proc/{pid}").stat().st_uid
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if owner == pwd.getpwnam(USER).pw_uid or PRIVATE_ENGINE_DIR in cmdline:
            found.append(cmdline)
    return found


def mails(outbox: Path) -> list[str]:
    return [path.read_text(errors="replace") for path in sorted(outbox.glob("*.eml"))]


def why_no_mail(host: str, demo_dir: Path) -> str:
    """What each stage knew of the killed webapp: the exporter's series, Prometheus's alerts,
    Alertmanager's, the relay's log and the outbox."""

    def password(server: str) -> tuple[str, str]:
        return WEB_USER, (demo_dir / "web" / f"{server}_password").read_text().strip()

    def get(url: str, server: str) -> str:
        try:
            return requests.get(url, auth=password(server), timeout=10).text
        except (OSError, requests.RequestException) as error:
            return f"{url}: {error}"

    metrics = get("http://127.0.0.1:9487/metrics", "exporter")
    webapp = [
        line
        for line in metrics.splitlines()
        if "dockpulse-webapp-1" in line
        and (line.startswith(("container_up", "container_state", "dockpulse_container_expected")))
    ]
    alerts = get("http://127.0.0.1:9090/api/v1/alerts", "prometheus")
    routed = get("http://127.0.0.1:9093/api/v2/alerts", "alertmanager")
    relay = docker(host, "logs", "--tail", "40", "dockpulse-alert-relay-1")
    notifier = docker(host, "logs", "--tail", "30", "dockpulse-alertmanager-1")
    try:
        relay_metrics = requests.get("http://127.0.0.1:9095/metrics", timeout=10).text
    except requests.RequestException as error:
        relay_metrics = str(error)
    counted = [line for line in relay_metrics.splitlines() if line.startswith("dockpulse_relay_")]
    state = docker(host, "inspect", "--format={{json .State}}", "dockpulse-webapp-1").stdout
    listed = sorted(path.name for path in (demo_dir / "outbox").iterdir())
    return "\n".join((
        f"no ContainerDown mail about the webapp; outbox: {listed}", f"docker: {state}",
        "exporter:", *webapp, f"prometheus: {alerts[:3000]}", f"alertmanager: {routed[:3000]}",
        f"relay:\n{relay.stdout[-3000:]}{relay.stderr[-3000:]}", "relay metrics:", *counted,
        f"alertmanager's log:\n{notifier.stdout[-3000:]}{notifier.stderr[-3000:]}",
    ))  # fmt: skip


def test_demo_as_a_user_on_their_engine_pulls_through_the_registry(
    mirror: Mirror, users_engine: Engine, user: Path
) -> None:
    host = users_engine.host
    users_image = busybox_image(users_engine)
    started = docker(
        host, "run", "-d", "--name", USERS_CONTAINER, "--network=none", users_image, "sleep", "3600"
    )
    assert started.returncode == 0, started.stderr
    before = dockerd_pids()
    demo_dir = user / ".demo"  # in the user's home: nothing of a previous demo, as in a new clone
    try:
        up = as_user(
            USER, "demo", "--no-follow", env={"DOCKPULSE_DEMO_DIR": str(demo_dir)}, timeout=900
        )
        assert up.returncode == 0, up.stderr[-3000:]
        print(*(line for line in up.stderr.splitlines() if " in " in line), sep="\n")  # timings
        assert dockerds_of_the_demo(before) == []  # the user's engine, no second dockerd
        assert f"Docker engine at {host} (the default socket)" in up.stderr

        # Every upstream image pulled through the mirror, nothing built from Debian packages.
        access_log = mirror.log.read_text()
        for name in MIRRORED:
            repository, _, tag = mirror_path(name).partition(":")
            assert f"GET /v2/{repository}/manifests/{tag}" in access_log, name
            digests = docker(host, "image", "inspect", "--format={{json .RepoDigests}}", name)
            assert json.loads(digests.stdout), f"{name} was not pulled"
        settings = (demo_dir / "compose.env").read_text()
        for name in NOT_MIRRORED:  # loaded as if pulled before: the demo uses it as it is
            assert f"={name}\n" in settings, name
        assert "from Debian packages" not in up.stderr
        images = set(docker(host, "images", "--format={{.Repository}}:{{.Tag}}").stdout.split())
        assert not images & DEBIAN_ROOTFS_TAGS
        assert "PROMETHEUS_IMAGE=prom/prometheus:v2.42.0" in settings
        assert "POSTGRES_IMAGE=postgres:15.10-bookworm" in settings

        # No Grafana image anywhere here: the summary says what to do; its profile is valid.
        assert f"run `docker pull {GRAFANA_IMAGE}`, then `make demo` again" in up.stdout
        grafana = Stack(host, demo_dir / "compose.env", profiles=("grafana",))
        assert "grafana" in grafana.run("config", "--services", capture=True).split()

        # The user's own container is monitored beside the demo's.
        exporter_password = (demo_dir / "web" / "exporter_password").read_text().strip()
        metrics = requests.get(
            "http://127.0.0.1:9487/metrics", auth=(WEB_USER, exporter_password), timeout=10
        ).text
        assert f'name="{USERS_CONTAINER}"' in metrics
        assert 'name="dockpulse-webapp-1"' in metrics

        # A killed demo container is mailed.
        outbox = demo_dir / "outbox"
        assert docker(host, "kill", "dockpulse-webapp-1").returncode == 0
        deadline = time.monotonic() + 120
        while not any("ContainerDown" in m and "dockpulse-webapp-1" in m for m in mails(outbox)):
            if time.monotonic() > deadline:
                pytest.fail(why_no_mail(host, demo_dir))
            time.sleep(1)
    finally:
        down = as_user(USER, "down", env={"DOCKPULSE_DEMO_DIR": str(demo_dir)}, timeout=300)
    assert down.returncode == 0, down.stderr
    demo_left = docker(
        host, "ps", "--all", "--quiet", "--filter", "label=com.docker.compose.project=dockpulse"
    )
    assert demo_left.stdout.split() == []
    running = docker(host, "inspect", "--format={{.State.Running}}", USERS_CONTAINER).stdout
    assert running.strip() == "true"
    images = set(docker(host, "images", "--format={{.Repository}}:{{.Tag}}").stdout.split())
    assert {users_image, *STAND_INS} <= images
    assert dockerds_of_the_demo(before) == []


def test_a_pull_the_registry_refuses_names_the_image_and_the_reason(
    mirror: Mirror, users_engine: Engine
) -> None:
    missing = f"{mirror.address}/prom/missing:v0"
    with pytest.raises(StackError, match=f"pulling {missing} failed: .*manifest unknown"):
        pull(users_engine, missing)


def test_without_a_registry_each_missing_image_falls_back_to_debian(
    mirror: Mirror, users_engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    mirror.stop()
    docker(users_engine.host, "rmi", "prom/prometheus:v2.42.0", "postgres:15.10-bookworm")
    images = plan_images(users_engine)
    said = capsys.readouterr().err
    assert images.variables["PROMETHEUS_IMAGE"] == PROMETHEUS.tag
    assert images.variables["POSTGRES_IMAGE"] == POSTGRES.tag
    assert images.variables["ALERTMANAGER_IMAGE"] == "prom/alertmanager:v0.25.0"  # had: kept
    assert images.python_base == PYTHON_IMAGE
    assert {PROMETHEUS, POSTGRES} <= set(images.to_build)
    assert not images.grafana
    for name, stand_in in (
        ("prom/prometheus:v2.42.0", PROMETHEUS.tag),
        ("postgres:15.10-bookworm", POSTGRES.tag),
    ):
        assert f"{name} cannot be pulled (no registry answers): building {stand_in}" in said
