"""Every load profile runs headless for a few seconds against the real app: Locust writes its
CSV with requests to the endpoints the profile is about, and the metrics name the profile."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.helpers import value
from tests.loadtest.conftest import LocustRun, scrape_while_running, start_locust

# Profile -> endpoints its users must have hit within the first seconds.
PROFILES = {
    "normal": {"/", "/health"},
    "cpu-intensive": {"/stress/cpu"},
    "memory-intensive": {"/stress/memory"},
    "db-intensive": {"/stress/db"},
    "spike": {"/", "/health"},
    "extreme": {"/stress/cpu", "/stress/memory", "/stress/db"},
}


@pytest.fixture(scope="module")
def runs(loadtest_webapp: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, LocustRun]:
    """All six profiles at once, to keep the suite short. Each runs 8 s: Locust writes its CSV
    once a second and not at exit, so the run must outlast the 5 s memory requests."""
    out_dir = tmp_path_factory.mktemp("locust")
    runs = {name: start_locust(name, loadtest_webapp, out_dir) for name in PROFILES}
    try:
        for run in runs.values():
            scrape_while_running(run)
        for run in runs.values():
            output, _ = run.process.communicate(timeout=60)
            run.output = output
            # Locust exits 1 when some requests failed (429s are expected under load).
            assert run.process.returncode in (0, 1), output[-2000:]
            assert "Traceback" not in output, output[-2000:]
    finally:
        for run in runs.values():
            if run.process.poll() is None:
                run.process.kill()
                run.process.wait()
    return runs


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_writes_csv_with_requests_to_its_endpoints(
    runs: dict[str, LocustRun], profile: str
) -> None:
    stats = runs[profile].stats()
    assert int(stats["Aggregated"]["Request Count"]) > 0
    hit = {name for name, row in stats.items() if int(row["Request Count"]) > 0}
    assert PROFILES[profile] <= hit, f"{profile} hit {sorted(hit)}: {runs[profile].output}"


@pytest.mark.parametrize("profile", PROFILES)
def test_metrics_name_the_profile_while_it_runs(runs: dict[str, LocustRun], profile: str) -> None:
    samples = runs[profile].samples
    assert value(samples, "locust_profile_info", profile=profile) == 1
    assert value(samples, "dockpulse_loadtest_active", profile=profile) == 1


def test_metrics_count_requests_and_response_times(runs: dict[str, LocustRun]) -> None:
    samples = runs["normal"].samples
    requests = sum(v for n, _, v in samples if n == "dockpulse_loadtest_requests_total")
    assert requests > 0
    histogram_count = sum(
        v for n, _, v in samples if n == "dockpulse_loadtest_response_time_seconds_count"
    )
    assert histogram_count == requests  # every answered request is in the histogram
    assert value(samples, "dockpulse_loadtest_users", user_class="Visitor") == 5


def test_an_unknown_profile_is_refused_naming_stress_level(
    loadtest_webapp: str, tmp_path: Path
) -> None:
    run = start_locust("gentle", loadtest_webapp, tmp_path, run_time="2s")
    output, _ = run.process.communicate(timeout=60)
    assert run.process.returncode != 0
    assert "STRESS_LEVEL: unknown profile 'gentle'" in output
