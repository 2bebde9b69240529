"""Load from more than one process: `dockpulse-loadtest` with LOADTEST_WORKERS=N runs a Locust
master and N workers. A real master and 2 workers loading the webapp container (the profile's
users on both workers, the master's metrics the totals of what the webapp answered, the CPU
alert mailed) are proved in the scaling proof's one stack: tests/scale/test_proof.py."""

from __future__ import annotations

import os
import subprocess

from tests.loadtest.conftest import LAUNCHER


def test_a_bad_worker_count_is_refused_naming_its_variable() -> None:
    result = subprocess.run(
        [str(LAUNCHER), "--headless"],
        env={**os.environ, "LOADTEST_WORKERS": "two"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "dockpulse-loadtest: LOADTEST_WORKERS: expected a whole number >= 0, got 'two'"
    ]
