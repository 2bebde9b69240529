"""The relay behind a web config: every route over TLS with basic auth, which then replaces the
bearer token (both would be the one `Authorization` header)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import requests
import yaml

from dockpulse.settings import ConfigError
from dockpulse_relay.config import load_config
from testkit.helpers import free_port
from testkit.local_stack import LocalStack
from testkit.passwords import bcrypt_hash
from testkit.tls import Certificates
from tests.relay.payloads import alert, notification

PASSWORD = "an-alertmanager-password"


@pytest.fixture
def relay_web_config(tmp_path: Path, certificates: Certificates) -> Path:
    path = tmp_path / "relay-web.yml"
    hashed = bcrypt_hash(PASSWORD)
    tls = {"cert_file": str(certificates.server_cert), "key_file": str(certificates.server_key)}
    path.write_text(yaml.safe_dump({"tls_server_config": tls, "basic_auth_users": {"am": hashed}}))
    return path


def test_basic_auth_users_or_bearer_token_not_both(relay_web_config: Path, tmp_path: Path):
    flags = {"web_config_file": relay_web_config, "store": str(tmp_path / "relay.db")}
    with pytest.raises(ConfigError, match=r"^auth_token \(RELAY_AUTH_TOKEN\): not with basic"):
        load_config(None, {**flags, "auth_token": "a-token"})
    # users in the web config authenticate the webhook: no token needed off loopback either
    assert load_config(None, {**flags, "listen_address": "0.0.0.0:9095"}).auth_token is None


def test_every_relay_route_behind_the_web_config(
    relay_web_config: Path, tmp_path: Path, certificates: Certificates
) -> None:
    ca, auth = str(certificates.ca), ("am", PASSWORD)
    with LocalStack(tmp_path) as stack:
        port = free_port()
        folder = stack.folder("relay")
        relay = stack.start(
            "relay",
            [sys.executable, "-m", "dockpulse_relay.cli", f"--web.listen-address=127.0.0.1:{port}"],
            port,
            "/healthz",
            {
                "RELAY_WEB_CONFIG_FILE": str(relay_web_config),
                "RELAY_AUTH_TOKEN": "",
                "RELAY_STORE": str(folder / "relay.db"),
                "OUTBOX_DIR": str(folder / "outbox"),
                "ALERT_LOG": str(folder / "alerts.log"),
            },
            scheme="https",
            request_options={"verify": ca, "auth": auth},
        )
        body = notification(alert(severity="warning"))
        for path in ("/healthz", "/metrics", "/nothing-here"):
            assert requests.get(relay.url + path, verify=ca, timeout=5).status_code == 401
        for path in ("/webhook", "/heartbeat"):
            answer = requests.post(relay.url + path, json=body, verify=ca, timeout=5)
            assert answer.status_code == 401
        answer = requests.post(relay.url + "/webhook", json=body, verify=ca, auth=auth, timeout=5)
        assert answer.status_code == 200 and answer.json()["status"] == "stored"
        metrics = requests.get(relay.url + "/metrics", verify=ca, auth=auth, timeout=5).text
        assert 'relay_alerts_received_total{status="firing"} 1.0' in metrics
