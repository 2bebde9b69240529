"""The image step's pure parts: the pinned names agree with docker-compose.yaml, and a failed
pull's error is told apart (no registry answers: build here; refused: the user's to fix)."""

from __future__ import annotations

import pytest
import yaml

from dockpulse_stack.images import GRAFANA_IMAGE, PYTHON_IMAGE, REPO_ROOT, UPSTREAM_IMAGES
from dockpulse_stack.registry import registry_unreachable, report_progress

# dockerd's own words (Docker 20.10 / 24), as `docker pull` prints them.
UNREACHABLE = [
    'Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io on '
    "10.255.255.53:53: no such host",  # this machine, offline
    'Get "http://127.0.0.1:5000/v2/": dial tcp 127.0.0.1:5000: connect: connection refused',
    'Get "https://registry-1.docker.io/v2/": net/http: request canceled while waiting for '
    "connection (Client.Timeout exceeded while awaiting headers)",
    'Get "https://registry-1.docker.io/v2/": proxyconnect tcp: dial tcp 10.0.0.1:3128: i/o timeout',
]
REFUSED = [
    "toomanyrequests: You have reached your pull rate limit. You may increase the limit by "
    "authenticating and upgrading: https://www.docker.com/increase-rate-limit",
    "pull access denied for prom/prometheus, repository does not exist or may require "
    "'docker login': denied: requested access to the resource is denied",
    "manifest for prom/prometheus:v2.42.0 not found: manifest unknown: manifest unknown",
    "failed to register layer: write /usr/bin/prometheus: no space left on device",
    'Head "https://registry-1.docker.io/v2/prom/prometheus/manifests/v2.42.0": unauthorized: '
    "incorrect username or password",
]


@pytest.mark.parametrize("reason", UNREACHABLE)
def test_no_registry_answering_means_build_here(reason: str) -> None:
    assert registry_unreachable(reason)


@pytest.mark.parametrize("reason", REFUSED)
def test_a_refusal_is_not_taken_for_an_offline_machine(reason: str) -> None:
    assert not registry_unreachable(reason)


def test_the_pinned_images_are_the_ones_docker_compose_yaml_runs() -> None:
    compose = (REPO_ROOT / "docker-compose.yaml").read_text()
    services = yaml.safe_load(compose)["services"]
    pinned = {service["image"] for service in services.values()}
    assert {image.name for image in UPSTREAM_IMAGES} - {PYTHON_IMAGE} <= pinned
    assert services["grafana"]["image"] == GRAFANA_IMAGE
    assert f"${{PYTHON_IMAGE:-{PYTHON_IMAGE}}}" in compose  # the project images' BASE_IMAGE


def test_a_pull_stream_ending_in_an_error_returns_it() -> None:
    events = [
        {"status": "Pulling fs layer", "id": "a"},
        {"status": "Already exists", "id": "b"},
        {"status": "Pull complete", "id": "a"},
        {"error": "toomanyrequests: rate limit", "errorDetail": {"message": "rate limit"}},
    ]
    assert report_progress("x:1", iter(events)) == "toomanyrequests: rate limit"
    assert report_progress("x:1", iter(events[:3])) == 1  # downloaded: a; b was there
