"""The exporter reads Docker only through its socket proxy (real haproxy, real dockerd): its normal
work goes through, and every write, exec, pull or read of files and secrets answers 403."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import docker
import pytest

from dockpulse_stack.demo import socket_path
from dockpulse_stack.engine import Engine
from testkit.helpers import value, wait_until
from testkit.socket_proxy import request, socket_proxy


@pytest.fixture(scope="module")
def proxy(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The proxy's unix socket, in front of the test engine."""
    with socket_proxy(socket_path(engine.host), tmp_path_factory.mktemp("socket-proxy")) as path:
        yield path


def created_by_requests(client: docker.DockerClient, image: str) -> dict[str, list[str]]:
    """What the refused requests would have made: containers of `image`, busybox images
    (other tests' builds may come and go on the same engine meanwhile)."""
    return {
        "containers": sorted(
            c.id for c in client.containers.list(all=True, filters={"ancestor": image})
        ),
        "images": sorted(i.id for i in client.images.list(name="busybox")),
    }


def test_the_exporter_sees_containers_and_their_events_through_the_proxy(
    proxy: Path, start_exporter, run_container
) -> None:
    exporter = start_exporter(docker_host=f"unix://{proxy}")
    wait_until(lambda: value(exporter.scrape(), "dockpulse_docker_up") == 1)
    # Started after the exporter's first listing (its resync is 30 s away): only the event
    # stream through the proxy can tell it about this container, and then about its stop.
    sleeper = run_container("sleep 60")
    state = {"name": sleeper.name}
    wait_until(lambda: value(exporter.scrape(), "container_state", **state, state="running") == 1)
    sleeper.stop(timeout=0)
    wait_until(lambda: value(exporter.scrape(), "container_state", **state, state="exited") == 1)


def test_everything_but_the_exporters_reads_is_refused(
    proxy: Path, engine: Engine, busybox: str, run_container
) -> None:
    target = run_container("sleep 60")
    with closing(engine.client()) as client:
        version = f"/v{client.version()['ApiVersion']}"
        before = created_by_requests(client, busybox)
    privileged = {"Image": busybox, "Cmd": ["id"], "HostConfig": {"Privileged": True}}
    refused = [
        ("POST", f"{version}/containers/create", privileged),
        ("POST", "/containers/create", privileged),
        ("POST", f"{version}/containers/{target.id}/exec", {"Cmd": ["id"]}),
        ("POST", f"{version}/images/create?fromImage=busybox&tag=latest", None),
        ("POST", f"{version}/containers/{target.id}/stop", None),
        ("DELETE", f"{version}/containers/{target.id}?force=1", None),
        ("PUT", f"{version}/containers/{target.id}/archive?path=/tmp", None),
        ("HEAD", f"{version}/containers/json", None),
        ("GET", f"{version}/secrets", None),
        ("GET", f"{version}/configs", None),
        ("GET", f"{version}/containers/{target.id}/archive?path=/etc/passwd", None),
        ("GET", f"{version}/containers/{target.id}/export", None),
        ("GET", f"{version}/images/json", None),
        # Traversal and escapes that dockerd's router would clean or decode into /export.
        ("GET", f"{version}/containers/{target.id}/json/../export", None),
        ("GET", f"{version}/containers/{target.id}/%65xport", None),
        ("GET", f"{version}/containers/{target.id}%2Fexport", None),
        ("GET", f"{version}//containers/{target.id}/export", None),
        ("GET", f"{version}/containers/json/../../containers/{target.id}/export", None),
    ]
    answers = {
        f"{method} {path}": request(
            proxy, method, path, json.dumps(body).encode() if body is not None else None
        )[0]
        for method, path, body in refused
    }
    assert answers == {call: 403 for call in answers}
    # The exporter's own reads still answer, prefixed or not.
    assert request(proxy, "GET", f"{version}/containers/{target.id}/json")[0] == 200
    assert request(proxy, "GET", f"{version}/containers/{target.id}/logs?stdout=1")[0] == 200
    assert request(proxy, "GET", "/version")[0] == 200
    with closing(engine.client()) as client:
        after = created_by_requests(client, busybox)
        inspected = client.api.inspect_container(target.id)
    assert after == before
    assert not inspected["ExecIDs"]
    # Each refusal is in the proxy's log (allowed reads are not: hundreds a minute).
    log = (proxy.parent / "haproxy.log").read_text()
    assert f"POST {version}/containers/create" in log and " 403 " in log
    assert f"GET {version}/containers/{target.id}/json HTTP" not in log
    assert inspected["State"]["Running"]


def test_docker_py_gets_a_403_from_the_proxy(proxy: Path, busybox: str) -> None:
    """What a compromised exporter process would see with its own client library."""
    with closing(docker.APIClient(base_url=f"unix://{proxy}", timeout=10)) as client:
        assert client.containers(all=True) is not None
        with pytest.raises(docker.errors.APIError) as refused:
            client.create_container(busybox, ["id"], host_config={"Privileged": True})
    assert refused.value.status_code == 403
