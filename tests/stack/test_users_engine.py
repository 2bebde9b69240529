"""The user's own engine, found as the Docker CLI finds it, by a normal user in the docker group.

A real dockerd listens on /var/run/docker.sock (group `docker`, as docker.io and docker-ce set
it up) standing in for the user's engine, and a real non-root user runs `dockpulse engine`
through `runuser`: discovery must use that engine, start no second dockerd, and say in one line
what to do when the user may not use the socket.
"""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import shutil
import subprocess
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockpulse_stack.engine import DEFAULT_SOCKET, docker_context_host, start_private_dockerd
from tests.stack.test_fresh_machine import DOCKPULSE, assert_one_line_exit_2

pytestmark = pytest.mark.docker

USER = "dockpulse-user"
OUTSIDER = "dockpulse-outsider"  # not in the docker group
VENV_SITE = sysconfig.get_paths()["purelib"]


def dockerd_pids() -> set[int]:
    found = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True)
    return {int(pid) for pid in found.stdout.split()}


@pytest.fixture(scope="module")
def users_engine() -> Iterator[str]:
    """dockerd on the default socket, owned by root:docker with mode 660."""
    if DEFAULT_SOCKET.exists():
        pytest.fail(f"{DEFAULT_SOCKET} exists before the test: another engine runs here")
    subprocess.run(["groupadd", "-f", "docker"], check=True)
    state = Path(tempfile.mkdtemp(prefix="dp-users-", dir="/tmp"))
    engine = start_private_dockerd(state, socket=DEFAULT_SOCKET, group="docker")
    try:
        yield engine.host
    finally:
        engine.stop()
        shutil.rmtree(state, ignore_errors=True)
        DEFAULT_SOCKET.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def users(users_engine: str) -> Iterator[None]:
    for name, groups in ((USER, ["--groups", "docker"]), (OUTSIDER, [])):
        subprocess.run(["userdel", "--remove", name], capture_output=True)
        subprocess.run(["useradd", "--create-home", *groups, name], check=True)
    try:
        yield
    finally:
        for name in (USER, OUTSIDER):
            subprocess.run(["userdel", "--remove", name], capture_output=True)


def as_user(
    name: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`dockpulse <args>` as `name`, with a login-like environment (no DOCKER_HOST, no sbin)
    plus `env`.
    The test venv's interpreter lives under root's home, which a user cannot enter, so the
    system's Python 3.11 runs the venv's packages, as the user's own venv would."""
    home = pwd.getpwnam(name).pw_dir
    login = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "USER": name, "LANG": "C.UTF-8"}
    launcher = (
        f"import site, sys; site.addsitedir({VENV_SITE!r}); "
        "from dockpulse_stack.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    return subprocess.run(
        ["/usr/sbin/runuser", "-u", name, "--", "/usr/bin/python3", "-c", launcher, *args],
        env=login | (env or {}),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/",
    )


def test_a_user_in_the_docker_group_gets_their_engine(users_engine: str, users: None) -> None:
    assert USER in grp.getgrnam("docker").gr_mem
    before = dockerd_pids()
    result = as_user(USER, "engine")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == users_engine
    assert dockerd_pids() == before  # no second dockerd


def test_a_user_outside_the_docker_group_is_told_what_to_do(users: None) -> None:
    result = as_user(OUTSIDER, "engine")
    assert_one_line_exit_2(result, f"permission denied on {DEFAULT_SOCKET}", "usermod -aG docker")


def test_the_current_docker_context_comes_before_the_default_socket(
    users_engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As `docker context create other --docker host=...; docker context use other` writes it.
    meta = tmp_path / "contexts" / "meta" / hashlib.sha256(b"other").hexdigest()
    meta.mkdir(parents=True)
    other = "unix:///run/other/docker.sock"
    (meta / "meta.json").write_text(
        json.dumps({"Name": "other", "Endpoints": {"docker": {"Host": other}}})
    )
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": "other"}))
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    assert docker_context_host(tmp_path) == (other, "other")
    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path)}
    env.pop("DOCKER_HOST", None)
    result = subprocess.run(
        [str(DOCKPULSE), "engine"], env=env, capture_output=True, text=True, timeout=60
    )
    assert_one_line_exit_2(result, other, "docker context other", "does not answer")
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": "default"}))
    result = subprocess.run(
        [str(DOCKPULSE), "engine"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == users_engine, result.stderr
