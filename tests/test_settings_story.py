"""One settings story for every service: the same one-line wording for a bad value, naming the
field and its environment variable, exit status 2, and the listen address checked the same way."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
SERVICES = {
    "dockpulse-exporter": "EXPORTER",
    "dockpulse-relay": "RELAY",
    "dockpulse-webapp": "WEBAPP",
}


def run(program: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / program)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("program", SERVICES)
def test_a_bad_listen_address_reads_the_same_in_every_service(program: str) -> None:
    variable = f"{SERVICES[program]}_LISTEN_ADDRESS"
    result = run(program, **{variable: "nowhere"})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{program}: config error: listen_address ({variable}): expected HOST:PORT, got 'nowhere'"
    ]
