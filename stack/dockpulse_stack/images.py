"""The images the host-network stack runs: pulled where a registry answers, else built here.

`pulled_or_built` takes each pinned upstream image (`UPSTREAM_IMAGES`) the engine already has or
can pull (`registry.pull`), and for each one that cannot be had because no registry answers
builds its Debian-package stand-in (mmdebstrap rootfs + a tiny Dockerfile from `stack/local-
images/`; the Docker socket proxy's is Debian's haproxy). The project's own images are built
from their Dockerfiles on the pulled Python base, else on the Debian one. Debian rootfs images
are reused by tag; Dockerfile builds always run, so a code change is picked up, and Docker's
layer cache makes an unchanged rebuild quick.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dockpulse_stack.engine import Engine
from dockpulse_stack.errors import StackError
from dockpulse_stack.host_packages import ensure_debian_packages
from dockpulse_stack.registry import pull
from dockpulse_stack.rootfs import (
    DEBIAN_IMAGE_TOOLS,
    PYTHON_BASE_TAG,
    debian_image,
    image_exists,
    python_base_image,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")
LOCAL_CA_BASE_TAG = "dockpulse/python-base-localca:bookworm"
LOCAL_CA_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY *.crt /usr/local/share/ca-certificates/
RUN update-ca-certificates >/dev/null
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt
"""


@dataclass(frozen=True)
class LocalImage:
    """One image of the stack: a Dockerfile built on a base image."""

    tag: str
    dockerfile: str  # relative to the repository root, which is the build context
    debian_base: tuple[str, tuple[str, ...]] | None = None  # (tag, packages); None: Python base


# One rootfs under the three service stand-ins: one mmdebstrap run instead of three (a minute
# less on a cold machine), and one layer on disk that the three images share.
SERVICES_DEBIAN = (
    "dockpulse/services-debian:bookworm",
    ("prometheus", "prometheus-alertmanager", "wget", "postgresql-15", "haproxy"),
)
PROMETHEUS = LocalImage(
    "dockpulse/prometheus:local", "stack/local-images/prometheus.Dockerfile", SERVICES_DEBIAN
)
POSTGRES = LocalImage(
    "dockpulse/postgres:local", "stack/local-images/postgres.Dockerfile", SERVICES_DEBIAN
)
SOCKET_PROXY = LocalImage(
    "dockpulse/socket-proxy:local", "stack/local-images/socket-proxy.Dockerfile", SERVICES_DEBIAN
)
EXPORTER = LocalImage("dockpulse/exporter:local", "exporter/Dockerfile")
WEBAPP = LocalImage("dockpulse/webapp:local", "webapp/Dockerfile")
RELAY = LocalImage("dockpulse/alert-relay:local", "alert-relay/Dockerfile")
LOADTEST = LocalImage("dockpulse/loadtest:local", "loadtest/Dockerfile")

STACK_IMAGES = (PROMETHEUS, POSTGRES, SOCKET_PROXY, EXPORTER, WEBAPP, RELAY, LOADTEST)
PYTHON_IMAGE = "python:3.11-slim"  # the project's Dockerfiles' BASE_IMAGE default
GRAFANA_IMAGE = "grafana/grafana:11.3.1"  # no Debian package: started only where it can be had


@dataclass(frozen=True)
class UpstreamImage:
    """A pinned upstream image (as docker-compose.yaml names it), the Compose variable of the
    host-network override that selects it, and its stand-in built here from Debian packages."""

    name: str
    variable: str
    stand_in: LocalImage | None  # None: the Debian Python base (`python_base_image`)


UPSTREAM_IMAGES = (
    UpstreamImage(PYTHON_IMAGE, "PYTHON_IMAGE", None),
    UpstreamImage("prom/prometheus:v2.42.0", "PROMETHEUS_IMAGE", PROMETHEUS),
    UpstreamImage("prom/alertmanager:v0.25.0", "ALERTMANAGER_IMAGE", PROMETHEUS),
    UpstreamImage("postgres:15.10-bookworm", "POSTGRES_IMAGE", POSTGRES),
    UpstreamImage(
        "ghcr.io/tecnativa/docker-socket-proxy:v0.4.0", "SOCKET_PROXY_IMAGE", SOCKET_PROXY
    ),
)


@dataclass(frozen=True)
class StackImages:
    """What the demo runs: the Compose variables naming each service's image, whether Grafana's
    image is in the engine, and what is left to build here (on `python_base`, None: Debian's)."""

    variables: dict[str, str]
    grafana: bool
    to_build: tuple[LocalImage, ...]
    python_base: str | None


@contextmanager
def progress(label: str, every: float = 10.0) -> Iterator[None]:
    """Print `label`, a heartbeat every `every` seconds while the step runs, then its time."""
    print(f"dockpulse: {label} ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(every):
            elapsed = time.monotonic() - started
            print(f"dockpulse:   ... {label}: {elapsed:.0f}s", file=sys.stderr, flush=True)

    threading.Thread(target=heartbeat, daemon=True).start()
    try:
        yield
    finally:
        done.set()
    print(f"dockpulse: {label}: done in {time.monotonic() - started:.1f}s", file=sys.stderr)


def docker_build(engine: Engine, tag: str, dockerfile: str, base_image: str) -> str:
    """`docker build` from the repository root with `--build-arg BASE_IMAGE`; returns `tag`."""
    return run_docker_build(engine, tag, REPO_ROOT / dockerfile, base_image, REPO_ROOT)


def run_docker_build(
    engine: Engine, tag: str, dockerfile: Path, base_image: str, context: Path | str
) -> str:
    """The classic builder (no BuildKit here), on the host network, quiet unless it fails."""
    result = subprocess.run(
        [
            "docker",
            "build",
            "--network=host",
            "--quiet",
            "--force-rm",
            f"--build-arg=BASE_IMAGE={base_image}",
            f"--file={dockerfile}",
            f"--tag={tag}",
            str(context),
        ],
        env={**engine.env(), "DOCKER_BUILDKIT": "0"},
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
        raise StackError(f"building {tag} from {dockerfile} failed:\n{tail}")
    return tag


def python_build_base(engine: Engine, python_base: str | None = None) -> str:
    """`python_base` (else the Debian Python base), plus the host's own CAs when it has any (a
    TLS-intercepting proxy in front of PyPI): then `pip install` inside `docker build` trusts
    what the host does."""
    base = python_base or python_base_image(engine)
    certificates = sorted(LOCAL_CA_DIR.glob("*.crt"))
    if not certificates:
        return base
    with tempfile.TemporaryDirectory() as context:
        for certificate in certificates:
            shutil.copy(certificate, context)
        (Path(context) / "Dockerfile").write_text(LOCAL_CA_DOCKERFILE)
        run_docker_build(engine, LOCAL_CA_BASE_TAG, Path(context) / "Dockerfile", base, context)
    return LOCAL_CA_BASE_TAG


def build_local_image(engine: Engine, image: LocalImage, python_base: str | None = None) -> str:
    """Build one stack image (and its Debian base when missing) on `python_base` (else the
    Debian Python base) or its Debian rootfs; returns its tag."""
    if image.debian_base is None:
        base = python_build_base(engine, python_base)
    else:
        base = debian_image(engine, *image.debian_base)
    return docker_build(engine, image.tag, image.dockerfile, base)


def build_stack_images(
    engine: Engine, images: tuple[LocalImage, ...] = STACK_IMAGES, python_base: str | None = None
) -> None:
    """Build `images` (the project's on `python_base`, else the Debian Python base), with
    progress on stderr.

    Two builds at a time: first the base images (mmdebstrap, mostly downloads and dpkg; the
    service stand-ins share one rootfs, the project's images the Python base), then every image
    on its base as soon as that is ready, so neither line waits while the other has work.
    """
    debian_bases = {image.debian_base for image in images if image.debian_base}
    python_images = any(image.debian_base is None for image in images)
    rootfs_tags = {tag for tag, _ in debian_bases}
    if python_images and python_base is None:
        rootfs_tags.add(PYTHON_BASE_TAG)
    if any(not image_exists(engine, tag) for tag in rootfs_tags):
        ensure_debian_packages(DEBIAN_IMAGE_TOOLS)  # once, before the two lines of work start
    numbered = {image: number for number, image in enumerate(images, start=1)}

    with ThreadPoolExecutor(max_workers=2) as pool:
        # Bases first: the pool's two threads take them before any image that waits for one.
        bases = {base: pool.submit(debian_image, engine, *base) for base in debian_bases}
        if python_images:
            python = pool.submit(python_build_base, engine, python_base)

        def build(image: LocalImage) -> None:
            base = bases[image.debian_base] if image.debian_base else python
            tag = base.result()
            with progress(f"[{numbered[image]}/{len(images)}] image {image.tag}"):
                docker_build(engine, image.tag, image.dockerfile, tag)

        for done in [pool.submit(build, image) for image in images]:
            done.result()


def upstream_images_had(engine: Engine) -> set[str]:
    """The upstream images (and Grafana's) the engine has or could pull now; after the first
    that no registry answered for, the rest are not tried (Docker Hub, for every one)."""
    registry_answers = True
    had: set[str] = set()
    for name in dict.fromkeys([image.name for image in UPSTREAM_IMAGES] + [GRAFANA_IMAGE]):
        if image_exists(engine, name) or (registry_answers and pull(engine, name)):
            had.add(name)
        else:
            registry_answers = False
    return had


def plan_images(engine: Engine) -> StackImages:
    """Each upstream image the engine has or can pull, else (no registry answers) its Debian
    stand-in, said in one line; a pull refused for another reason raises StackError."""
    had = upstream_images_had(engine)
    variables: dict[str, str] = {}
    to_build = [image for image in STACK_IMAGES if image.debian_base is None]
    for upstream in UPSTREAM_IMAGES:
        stand_in = upstream.stand_in.tag if upstream.stand_in else PYTHON_BASE_TAG
        if upstream.name in had:
            variables[upstream.variable] = upstream.name
            continue
        print(
            f"dockpulse: {upstream.name} cannot be pulled (no registry answers): "
            f"building {stand_in} from Debian packages instead",
            file=sys.stderr,
        )
        variables[upstream.variable] = stand_in
        if upstream.stand_in is not None and upstream.stand_in not in to_build:
            to_build.insert(0, upstream.stand_in)
    python_base = PYTHON_IMAGE if PYTHON_IMAGE in had else None
    return StackImages(variables, GRAFANA_IMAGE in had, tuple(to_build), python_base)


def pulled_or_built(engine: Engine) -> StackImages:
    """Every image the demo runs: pulled or had (`plan_images`), the rest built here."""
    images = plan_images(engine)
    build_stack_images(engine, images.to_build, images.python_base)
    return images
