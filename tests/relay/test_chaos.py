"""Quick versions of the chaos scenarios (bench/chaos.py runs them at full size): nothing lost,
duplicates only in the at-least-once window (a mail sent, then the relay killed before it
marked it sent). Flapping and the dead man's switch have their own tests (test_cooldown.py,
tests/rules/test_self_alerting.py)."""

from __future__ import annotations

import pytest

from testkit.chaos_scenarios import SCENARIOS, Scale

pytestmark = pytest.mark.slow  # relay processes, Alertmanager, real waits

QUICK = ["kill-9", "ses-unreachable", "ses-credentials", "alertmanager-restart", "disk-full",
         "hostile"]  # fmt: skip


@pytest.mark.parametrize("name", QUICK)
def test_no_incident_is_lost(name: str, tmp_path) -> None:
    row = SCENARIOS[name](tmp_path, Scale.quick())
    print(" | ".join(row.cells()))
    assert row.incidents > 0
    assert row.lost == 0, row
    assert row.mailed == row.incidents
    if name != "kill-9":
        assert row.duplicated == 0, row
    else:  # at most the mail in flight when the relay was killed, sent again
        assert row.duplicated <= row.incidents // 2, row
