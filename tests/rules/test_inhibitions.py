"""alertmanager.yml's inhibitions, checked by the real Alertmanager: alerts are posted to its
API and its own view of them (suppressed or active) is read back. amtool cannot test these.
"""

from __future__ import annotations

from datetime import UTC, datetime

import requests

from testkit.helpers import free_port, wait_until

FIRING = [
    # host1: container web is down; db is fine but busy.
    {"alertname": "ContainerDown", "severity": "critical", "instance": "h1", "name": "web"},
    {"alertname": "ContainerHighCpu", "severity": "warning", "instance": "h1", "name": "web"},
    {"alertname": "ContainerHighMemory", "severity": "warning", "instance": "h1", "name": "web"},
    {"alertname": "ContainerUnhealthy", "severity": "warning", "instance": "h1", "name": "web"},
    {"alertname": "ContainerHighCpu", "severity": "warning", "instance": "h1", "name": "db"},
    {"alertname": "ContainerRestarting", "severity": "warning", "instance": "h1", "name": "web"},
    {
        "alertname": "ProbeFailed",
        "severity": "critical",
        "instance": "h1",
        "name": "web",
        "probe": "web",
        "target": "http://127.0.0.1:8000/",
    },
    # host2: the exporter is down; host3: Docker is unreachable.
    {"alertname": "ExporterDown", "severity": "critical", "instance": "h2", "job": "exporter"},
    {"alertname": "ContainerMissing", "severity": "critical", "instance": "h2", "name": "web"},
    {"alertname": "ContainerHighMemory", "severity": "warning", "instance": "h2", "name": "db"},
    {
        "alertname": "ProbeSlow",
        "severity": "warning",
        "instance": "h2",
        "name": "home",
        "probe": "home",
        "target": "http://127.0.0.1:8000/",
    },
    {"alertname": "DockerEngineDown", "severity": "critical", "instance": "h3", "job": "exporter"},
    {"alertname": "ContainerDown", "severity": "critical", "instance": "h3", "name": "web"},
    # host4: edge's certificate fails verification, so its probe fails too; api's just fails.
    *(
        {
            "alertname": alertname,
            "severity": "critical",
            "instance": "h4",
            "name": name,
            "probe": name,
            "target": f"https://127.0.0.1:8443/{name}",
        }
        for alertname, name in [
            ("ProbeCertificateInvalid", "edge"),
            ("ProbeFailed", "edge"),
            ("ProbeFailed", "api"),
        ]
    ),
]

SUPPRESSED = {
    ("ContainerHighCpu", "h1", "web"),
    ("ContainerHighMemory", "h1", "web"),
    ("ContainerUnhealthy", "h1", "web"),
    ("ProbeFailed", "h1", "web"),
    ("ContainerMissing", "h2", "web"),
    ("ContainerHighMemory", "h2", "db"),
    ("ContainerDown", "h3", "web"),
    ("ProbeFailed", "h4", "edge"),
}


def test_down_container_lost_host_and_bad_certificate_silence_their_alerts(
    start_alertmanager,
) -> None:
    # Notifications go to a closed port: this test reads Alertmanager's state, not mails.
    alertmanager = start_alertmanager(f"http://127.0.0.1:{free_port()}")
    now = datetime.now(UTC).isoformat()
    posted = requests.post(
        f"{alertmanager.url}/api/v2/alerts",
        json=[{"labels": labels, "startsAt": now} for labels in FIRING],
        timeout=5,
    )
    assert posted.status_code == 200, posted.text

    def states() -> dict[tuple[str, str, str], str] | None:
        alerts = requests.get(f"{alertmanager.url}/api/v2/alerts", timeout=5).json()
        found = {
            (a["labels"]["alertname"], a["labels"]["instance"], a["labels"].get("name", "")): a[
                "status"
            ]["state"]
            for a in alerts
        }
        suppressed = {key for key, state in found.items() if state == "suppressed"}
        return found if len(found) == len(FIRING) and suppressed == SUPPRESSED else None

    found = wait_until(states, timeout=15)
    active = {key for key, state in found.items() if state == "active"}
    assert ("ContainerHighCpu", "h1", "db") in active  # another container's alert
    assert ("ContainerRestarting", "h1", "web") in active  # the cause stays visible
    assert ("ProbeSlow", "h2", "home") in active  # probes are not the exporter's containers
    assert ("ExporterDown", "h2", "") in active
    assert ("DockerEngineDown", "h3", "") in active
    assert ("ProbeCertificateInvalid", "h4", "edge") in active  # the reason is mailed
    assert ("ProbeFailed", "h4", "api") in active  # another probe of that host
