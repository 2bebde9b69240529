"""Secrets as files (Docker secrets' convention): every setting's variable NAME also reads
NAME_FILE, and so do the secrets boto3 and libpq read themselves; both set, or a file that
cannot be read, is one line naming the field."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dockpulse.settings import ConfigError, export_secret_files, load_settings
from dockpulse_relay.config import ENVIRONMENT as RELAY_ENVIRONMENT
from dockpulse_relay.config import RelayConfig
from dockpulse_webapp.config import ENVIRONMENT as WEBAPP_ENVIRONMENT
from dockpulse_webapp.config import WebappConfig


def secret(tmp_path: Path, name: str, value: str) -> str:
    path = tmp_path / name
    path.write_text(value)
    path.chmod(0o600)
    return str(path)


def test_name_file_sets_the_secret(tmp_path: Path) -> None:
    environ = {
        "RELAY_AUTH_TOKEN_FILE": secret(tmp_path, "token", "a-token\n"),
        "SMTP_PASSWORD_FILE": secret(tmp_path, "smtp", "p@ss word\r\n"),
    }
    config = load_settings(RelayConfig, None, RELAY_ENVIRONMENT, environ=environ)
    assert config.auth_token is not None and config.auth_token.get_secret_value() == "a-token"
    assert config.smtp_password is not None
    assert config.smtp_password.get_secret_value() == "p@ss word"
    url = "postgresql://dockpulse:s3cret@127.0.0.1:5432/dockpulse"
    environ = {"DATABASE_URL_FILE": secret(tmp_path, "database_url", url)}
    assert (
        load_settings(WebappConfig, None, WEBAPP_ENVIRONMENT, environ=environ).database_url == url
    )


def test_both_set_names_the_field(tmp_path: Path) -> None:
    environ = {"RELAY_AUTH_TOKEN": "x", "RELAY_AUTH_TOKEN_FILE": secret(tmp_path, "t", "y")}
    with pytest.raises(ConfigError) as error:
        load_settings(RelayConfig, None, RELAY_ENVIRONMENT, environ=environ)
    assert str(error.value) == (
        "auth_token (RELAY_AUTH_TOKEN, RELAY_AUTH_TOKEN_FILE): set one of them, not both"
    )


@pytest.mark.parametrize("make_path", [lambda tmp: tmp / "absent", lambda tmp: tmp])
def test_unreadable_file_names_the_field(tmp_path: Path, make_path) -> None:
    path = make_path(tmp_path)
    with pytest.raises(ConfigError) as error:
        load_settings(
            RelayConfig, None, RELAY_ENVIRONMENT, environ={"SMTP_PASSWORD_FILE": str(path)}
        )
    assert str(error.value).startswith(f"smtp_password (SMTP_PASSWORD_FILE): cannot read {path}: ")


def test_library_secrets_from_files(tmp_path: Path) -> None:
    environ = {
        "AWS_SECRET_ACCESS_KEY_FILE": secret(tmp_path, "aws", "wJalr\n"),
        "PGPASSWORD": "already-set",
    }
    export_secret_files(("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "PGPASSWORD"), environ)
    assert environ["AWS_SECRET_ACCESS_KEY"] == "wJalr"
    assert environ["PGPASSWORD"] == "already-set" and "AWS_ACCESS_KEY_ID" not in environ
    environ["AWS_SECRET_ACCESS_KEY_FILE"] = str(tmp_path / "absent")
    with pytest.raises(ConfigError, match=r"^AWS_SECRET_ACCESS_KEY, AWS_SECRET_ACCESS_KEY_FILE"):
        export_secret_files(("AWS_SECRET_ACCESS_KEY",), environ)  # set, and a file too


def test_the_relay_stops_with_one_line(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "AWS_SECRET_ACCESS_KEY_FILE": str(tmp_path / "absent"),
        "RELAY_STORE": str(tmp_path / "relay.db"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "dockpulse_relay.cli"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"dockpulse-relay: config error: AWS_SECRET_ACCESS_KEY_FILE: cannot read "
        f"{tmp_path / 'absent'}: No such file or directory"
    ]
