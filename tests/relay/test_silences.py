"""Silences are watched: against a real Alertmanager (basic auth from its --web.config.file), the
relay mails one warning per broad or long silence, naming who made it and why, and keeps quiet
about an ordinary narrow one; a restart does not warn again."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from testkit.helpers import free_port, value, wait_until
from testkit.local_stack import alertmanager_config, binary
from testkit.mail import text_of
from testkit.passwords import bcrypt_hash
from testkit.silences import create_silence

pytestmark = pytest.mark.sqlite_only  # the store's part runs on both in test_heartbeat
USER, PASSWORD = "relay", "silence-watch-test"
CHECK = "0.2s"


@dataclass
class Alertmanager:
    url: str
    auth: tuple[str, str]

    def silence(
        self, matchers: dict[str, str], hours: float = 1, regex: bool = False, by: str = "mallory"
    ) -> str:
        return create_silence(
            self.url,
            matchers,
            duration=hours * 3600,
            comment=f"silenced by {by}",
            created_by=by,
            auth=self.auth,
            regex=regex,
        )


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alertmanager]:
    """Debian's prometheus-alertmanager behind basic auth (its own --web.config.file), one for
    the module; each test starts with no active silence."""
    folder = tmp_path_factory.mktemp("alertmanager")
    token = folder / "token"
    token.write_text("unused\n")
    config = folder / "alertmanager.yml"
    config.write_text(yaml.safe_dump(alertmanager_config("http://127.0.0.1:1", token)))
    web = folder / "web.yml"
    web.write_text(yaml.safe_dump({"basic_auth_users": {USER: bcrypt_hash(PASSWORD)}}))
    port = free_port()
    with (folder / "alertmanager.log").open("ab") as log:
        process = subprocess.Popen(
            [
                binary("prometheus-alertmanager", "alertmanager"),
                f"--config.file={config}",
                f"--web.config.file={web}",
                f"--storage.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    service = Alertmanager(f"http://127.0.0.1:{port}", (USER, PASSWORD))
    try:
        ready = f"{service.url}/-/ready"
        wait_until(lambda: requests.get(ready, auth=service.auth, timeout=2).status_code == 200)
        assert requests.get(ready, timeout=2).status_code == 401  # credentials are needed
        yield service
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(autouse=True)
def no_silences(alertmanager: Alertmanager) -> None:
    """Expire what an earlier test left."""
    for silence in requests.get(
        f"{alertmanager.url}/api/v2/silences", auth=alertmanager.auth, timeout=5
    ).json():
        if silence["status"]["state"] != "expired":
            requests.delete(
                f"{alertmanager.url}/api/v2/silence/{silence['id']}",
                auth=alertmanager.auth,
                timeout=5,
            ).raise_for_status()


@pytest.fixture
def watching_relay(start_relay, alertmanager: Alertmanager, tmp_path: Path):
    password = tmp_path / "alertmanager_password"
    password.write_text(PASSWORD + "\n")
    return start_relay(
        ALERTMANAGER_URL=alertmanager.url,
        ALERTMANAGER_USERNAME=USER,
        ALERTMANAGER_PASSWORD_FILE=str(password),
        SILENCE_CHECK_INTERVAL=CHECK,
    )


def warnings_mailed(relay) -> list[str]:
    return [text_of(mail) for mail in relay.mails() if mail["X-Dockpulse-Kind"] == "silence"]


def test_broad_and_long_silences_are_mailed_once_each(
    alertmanager: Alertmanager, watching_relay
) -> None:
    relay = watching_relay
    broad = {
        "watchdog": alertmanager.silence({"alertname": "Watchdog"}, by="eve"),
        "everything": alertmanager.silence({"alertname": ".+"}, regex=True, by="mallory"),
        "severity": alertmanager.silence({"severity": "critical"}, by="trudy"),
        "host": alertmanager.silence({"instance": "host-1:9487"}, by="oscar"),
        "long": alertmanager.silence(
            {"alertname": "ContainerDown", "name": "web"}, hours=24 * 30, by="walter"
        ),
    }
    texts = wait_until(lambda: len(warnings_mailed(relay)) >= len(broad) and warnings_mailed(relay))
    assert len(texts) == len(broad), "one warning per silence"
    by_id = {silence_id: next(t for t in texts if silence_id in t) for silence_id in broad.values()}
    assert "matches the Watchdog" in by_id[broad["watchdog"]]
    assert "every alert with any labels" in by_id[broad["everything"]]
    assert 'every alert with severity="critical"' in by_id[broad["severity"]]
    assert 'every alert with instance="host-1:9487"' in by_id[broad["host"]]
    assert "longer than SILENCE_MAX_DURATION" in by_id[broad["long"]]
    for who, silence_id in (("eve", broad["watchdog"]), ("walter", broad["long"])):
        assert f"created by: {who}" in by_id[silence_id]
        assert f"silenced by {who}" in by_id[silence_id]  # the comment
    assert value(relay.metrics(), "dockpulse_relay_silences_up") == 1

    relay.restart()
    wait_until(lambda: value(relay.metrics(), "dockpulse_relay_silences_up") == 1)
    time.sleep(1.0)  # five passes after the restart
    assert len(warnings_mailed(relay)) == len(broad), "the store remembers what was warned"


def test_an_ordinary_narrow_short_silence_mails_nothing(
    alertmanager: Alertmanager, watching_relay
) -> None:
    relay = watching_relay
    alertmanager.silence(
        {"alertname": "ContainerHighCpu", "name": "web", "instance": "host-1:9487"}, hours=2
    )
    alertmanager.silence({"alertname": "Container.*Memory", "severity": "warning"}, regex=True)
    wait_until(lambda: value(relay.metrics(), "dockpulse_relay_silences_up") == 1)
    time.sleep(1.0)  # five passes over both silences
    assert warnings_mailed(relay) == []
    # The same pass that kept quiet would have spoken: a broad one now is mailed.
    alertmanager.silence({"severity": "warning"})
    wait_until(lambda: len(warnings_mailed(relay)) == 1)


def test_wrong_credentials_are_reported_not_mailed(
    alertmanager: Alertmanager, start_relay, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong_password"
    wrong.write_text("not-it\n")
    relay = start_relay(
        ALERTMANAGER_URL=alertmanager.url,
        ALERTMANAGER_USERNAME=USER,
        ALERTMANAGER_PASSWORD_FILE=str(wrong),
        SILENCE_CHECK_INTERVAL=CHECK,
    )
    alertmanager.silence({"alertname": ".+"}, regex=True)
    wait_until(lambda: value(relay.metrics(), "dockpulse_relay_silences_up") == 0)
    assert "401" in relay.output()
    assert warnings_mailed(relay) == []
