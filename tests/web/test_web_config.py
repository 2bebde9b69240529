"""`--web.config.file` loading, held to exporter-toolkit's cases and to `promtool check web-config`.

Each fixture is ours, written after exporter-toolkit's `web/testdata` good and bad cases:
`*.good.yml` must load, `*.bad.yml` must fail naming the field on its first line
(`# expect: FIELD`), and promtool (Prometheus 2.42's exporter-toolkit) must agree on both.
`*.stricter.yml` are the few that promtool accepts and dockpulse refuses on purpose (see
dockpulse/web_config.py): refused here, naming the field, and still accepted by promtool, so a
newer promtool that refuses them too shows up as a failing test to tidy.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dockpulse.settings import ConfigError
from dockpulse.web_config import load_web_config
from tests.web.conftest import FIXTURES

GOOD = sorted(path.name for path in FIXTURES.glob("*.good.yml"))
BAD = sorted(path.name for path in FIXTURES.glob("*.bad.yml"))
STRICTER = sorted(path.name for path in FIXTURES.glob("*.stricter.yml"))


def expected_field(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must name its field on line 1"
    return first.removeprefix("# expect: ")


def promtool_accepts(path: Path) -> bool:
    result = subprocess.run(
        ["promtool", "check", "web-config", str(path)], capture_output=True, text=True, timeout=20
    )
    return result.returncode == 0


@pytest.mark.parametrize("name", GOOD)
def test_good_web_config_loads(web_configs: Path, name: str) -> None:
    load_web_config(web_configs / name)
    assert promtool_accepts(web_configs / name)


@pytest.mark.parametrize("name", BAD)
def test_bad_web_config_names_the_field(web_configs: Path, name: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_web_config(web_configs / name)
    message = str(error.value)
    assert message.startswith("web.config.file: ") and "\n" not in message
    assert expected_field(web_configs / name) in message
    assert not promtool_accepts(web_configs / name)


@pytest.mark.parametrize("name", STRICTER)
def test_refused_here_though_promtool_accepts(web_configs: Path, name: str) -> None:
    with pytest.raises(ConfigError, match=expected_field(web_configs / name)):
        load_web_config(web_configs / name)
    assert promtool_accepts(web_configs / name)


def test_tls_enabled_only_by_files_or_policy(web_configs: Path) -> None:
    assert load_web_config(web_configs / "empty_tls_section.good.yml").tls is None  # type: ignore[union-attr]
    assert load_web_config(web_configs / "tls.good.yml").tls is not None  # type: ignore[union-attr]
    assert load_web_config(None) is None


@pytest.mark.parametrize(
    ("program", "variable"),
    [("dockpulse_exporter.cli", "EXPORTER_WEB_CONFIG_FILE"), ("dockpulse_relay.cli", None)],
)
def test_bad_web_config_stops_the_service(
    web_configs: Path, tmp_path: Path, program: str, variable: str | None
) -> None:
    """Exit code 2 and one line naming the field, from the flag (exporter: also the variable)."""
    bad = web_configs / "wrong_tls_version.bad.yml"
    flag = [] if variable else [f"--web.config.file={bad}"]
    env = {"PATH": "/usr/bin:/bin", "RELAY_STORE": str(tmp_path / "relay.db")}
    if variable:
        env[variable] = str(bad)
    result = subprocess.run(
        [sys.executable, "-m", program, "--web.listen-address=127.0.0.1:1", *flag],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "web.config.file: tls_server_config.min_version: unknown TLS version" in lines[0]
