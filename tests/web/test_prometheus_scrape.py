"""A real Prometheus (Debian's 2.42), given only the CA and the basic-auth credentials, scrapes
an exporter over TLS; a request without credentials is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
import yaml

from testkit.helpers import wait_until
from testkit.local_stack import LocalStack, exporter_config, query
from testkit.passwords import bcrypt_hash
from testkit.tls import Certificates

pytestmark = pytest.mark.slow  # starts a real Prometheus / Alertmanager of its own


def test_prometheus_scrapes_the_exporter_over_tls(
    tmp_path: Path, certificates: Certificates
) -> None:
    password = "a-scrape-password"
    password_file = tmp_path / "scrape_password"
    password_file.write_text(password)
    password_file.chmod(0o600)
    web_config = tmp_path / "exporter-web.yml"
    hashed = bcrypt_hash(password)
    web_config.write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {
                    "cert_file": str(certificates.server_cert),
                    "key_file": str(certificates.server_key),
                },
                "basic_auth_users": {"prometheus": hashed},
            }
        )
    )
    ca = str(certificates.ca)
    with LocalStack(tmp_path) as stack:
        exporter = stack.exporter(
            exporter_config(None),
            docker_host="unix:///nonexistent/docker.sock",  # no engine needed: an empty scrape
            web_config=web_config,
            scheme="https",
            request_options={"verify": ca, "auth": ("prometheus", password)},
        )
        scrape_job = {
            "job_name": "exporter",
            "scrape_interval": "1s",
            "scheme": "https",
            "tls_config": {"ca_file": ca},
            "basic_auth": {"username": "prometheus", "password_file": str(password_file)},
            "static_configs": [{"targets": [f"localhost:{exporter.port}"]}],
        }
        prometheus = stack.prometheus({"scrape_configs": [scrape_job]})
        up = wait_until(lambda: query(prometheus.url, 'up{job="exporter"} == 1'), timeout=30)
        assert up[0]["metric"]["instance"] == f"localhost:{exporter.port}"
        assert requests.get(exporter.url + "/metrics", verify=ca, timeout=5).status_code == 401
