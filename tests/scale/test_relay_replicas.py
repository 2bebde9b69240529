"""Two relay replicas on one PostgreSQL behind two Alertmanager peers, on real components (see
relay_replicas.py): a burst of 200 critical alerts, one replica killed with kill -9 while it
holds a mail, one peer stopped halfway. Every incident is mailed, and mailed once: the store's
unique alert key makes the two peers' copies through two replicas one alert, the claims make
one replica send each mail, and the killed replica's claims pass to the other when their lease
ends. bench/relay_failover.py prints the same figures over several rounds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scale.relay_replicas import relay_failover
from tests.support.postgres import PostgresServer


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


def test_a_burst_survives_a_killed_replica_and_a_stopped_peer(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    result = relay_failover(tmp_path, postgres, incidents=200)
    print(" | ".join(result.cells()))
    assert result.lost == 0, result
    assert result.mailed == result.incidents
    assert result.claimed_at_kill >= 1  # it died holding work...
    assert result.takeover_seconds is not None, result  # ...which the other replica sent
    # At least once: a mail the killed replica handed to the SMTP server but could not mark
    # sent goes again; nothing else may be mailed twice.
    assert result.duplicates <= result.claimed_at_kill, result
