"""Every panel's every query, run against a live Prometheus fed by the real exporter, has data.

Grafana cannot run here, so this sends Prometheus exactly the range queries Grafana would send,
with the variables set to the live test containers.
"""

from __future__ import annotations

import math
import time

import pytest

from testkit.helpers import wait_until
from tests.grafana import dashboards as model
from tests.grafana.conftest import LiveStack

BLOCK_IO = "container_fs_"


def dashboard(name: str) -> dict:
    return model.load(model.GRAFANA_DIR / "dashboards" / name)


def queries(stack: LiveStack) -> dict[str, str]:
    """Each dashboard target (and annotation) as the query Grafana would send, by target."""
    overview = {"instance": stack.instance, "container": f"({stack.burning}|{stack.stopped})"}
    detail = {"instance": stack.instance, "container": stack.burning}
    found = {}
    for name, values in (("containers-overview.json", overview), ("container-detail.json", detail)):
        board = dashboard(name)
        for target in model.targets(board) + model.annotation_targets(board):
            found[str(target)] = model.substitute(target.expr, values)
    return found


def series(stack: LiveStack, expr: str) -> list[dict]:
    """The series a range query over the stack's lifetime returns, with at least one number."""
    answer = stack.prometheus.query_range(expr, stack.started_at - 5, time.time())
    assert answer["status"] == "success", f"{expr}: {answer.get('error')}"
    return [
        found
        for found in answer["data"]["result"]
        if any(math.isfinite(float(value)) for _, value in found["values"])
    ]


def test_every_panel_query_returns_data(live_stack: LiveStack) -> None:
    to_run = queries(live_stack)
    # Block IO is checked last: this kernel may account no block IO to containers at all, and
    # then the exporter (like cAdvisor) exports no container_fs_* series.
    block_io = {target: expr for target, expr in to_run.items() if BLOCK_IO in expr}
    wait_for_data(live_stack, {t: e for t, e in to_run.items() if t not in block_io})
    reads = f'container_fs_reads_bytes_total{{name="{live_stack.burning}"}}'
    if series(live_stack, reads):
        wait_for_data(live_stack, block_io)


def wait_for_data(stack: LiveStack, expected: dict[str, str], timeout: float = 45) -> None:
    def empty() -> list[str]:
        return [target for target, expr in expected.items() if not series(stack, expr)]

    missing = empty()  # a query Prometheus rejects fails here, not as "no data"

    def all_have_data() -> bool:
        missing[:] = empty()
        return not missing

    try:
        wait_until(all_have_data, timeout=timeout, interval=1)
    except AssertionError:
        raise AssertionError("no data for:\n" + "\n".join(missing)) from None


def test_panels_show_the_live_containers_correctly(live_stack: LiveStack) -> None:
    """Spot checks that the numbers mean what the panel titles say."""
    targets = model.targets(dashboard("container-detail.json"))
    detail = {f"{target.panel}/{target.ref_id}": target.expr for target in targets}
    values = {"instance": live_stack.instance, "container": live_stack.burning}

    checked = {
        "cores": ("CPU cores used and limit/A", live_stack.burning),
        "cpu limit": ("CPU cores used and limit/D", live_stack.burning),
        "cpu %": ("CPU %/A", live_stack.burning),
        "throttled %": ("CPU throttling/A", live_stack.burning),
        "memory limit": ("Memory and limit/D", live_stack.burning),
        "memory %": ("Memory %/A", live_stack.burning),
        "up": ("Status/A", live_stack.burning),
        "stopped up": ("Status/A", live_stack.stopped),
        "stopped exit code": ("Exit code/A", live_stack.stopped),
    }

    def snapshot() -> dict[str, float] | None:
        """Every checked value at one instant whose scrapes are all in, so they agree."""
        at = time.time() - 3
        found = {}
        for key, (panel, container) in checked.items():
            expr = model.substitute(detail[panel], {**values, "container": container})
            result = live_stack.prometheus.query(expr, at)["data"]["result"]
            if not result:
                return None
            found[key] = float(result[0]["value"][1])
        return found

    v = wait_until(snapshot, timeout=30, interval=1)
    # The CPU loop is capped at 0.5 cores, so its CPU % is of those 0.5 cores, not the host's.
    # (How much of them it gets depends on the machine's load, so only the ratio is checked.)
    assert v["cpu limit"] == 0.5
    assert v["cpu %"] == pytest.approx(100 * v["cores"] / 0.5, rel=0.01)
    # Throttled periods never outnumber periods; the ratio of two rates can come out a float
    # rounding above 100 when every period was throttled (CI once saw 100.00000000000001).
    assert 0 <= v["throttled %"] <= 100 + 1e-9
    assert v["memory limit"] == 64 * 1024 * 1024
    assert 0 < v["memory %"] < 100
    assert (v["up"], v["stopped up"], v["stopped exit code"]) == (1, 0, 3)
