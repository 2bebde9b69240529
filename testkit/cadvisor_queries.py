"""The community's cAdvisor queries (`../shared/compat`, read in place, never copied), how
each is judged, and the containers they select on. Stdlib only: the cgroup v2 guest imports it.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# ../shared/compat next to the repository (a worktree may sit one level deeper).
COMPAT = next(
    (p / "shared" / "compat" for p in REPO_ROOT.parents if (p / "shared" / "compat").is_dir()),
    REPO_ROOT.parent / "shared" / "compat",
)
QUERIES = COMPAT / "cadvisor_queries_flags.tsv"
GOAL_SHARE = 0.95
# Flags whose queries can work on a plain Docker host when the exporter does what cAdvisor does.
REQUIRED_FLAGS = {"root-cgroup", "docker-label", "cgroupv1-cgroupfs-id"}
# A flagged query may also need other exporters; only this exporter's own process metrics
# (process_cpu_seconds_total) are available here, node_exporter's are not.
OTHER_EXPORTER_METRIC = re.compile(r"\bnode_")
RULE_SOURCES = ("rules", "alerts")
FINAL_COMPARISON = re.compile(
    r"\s*(?:>=|<=|==|!=|>|<)\s*[-+]?[0-9.]+(?:e[-+]?[0-9]+)?(?=\s*\)*\s*(?:\band\b|\bor\b|$))"
)


@dataclass(frozen=True)
class Query:
    source: str
    flags: frozenset[str]
    expr: str

    @property
    def judged(self) -> str:
        """Alert expressions without their threshold comparisons."""
        if any(word in self.source for word in RULE_SOURCES):
            return FINAL_COMPARISON.sub("", self.expr)
        return self.expr

    @property
    def required(self) -> bool:
        if not self.flags or not self.flags & REQUIRED_FLAGS:
            return False
        extra = self.flags - REQUIRED_FLAGS
        return extra <= {"needs-other-exporter"} and not OTHER_EXPORTER_METRIC.search(self.expr)


def load_queries() -> list[Query]:
    with QUERIES.open() as file:
        rows = list(csv.DictReader(file, delimiter="\t"))
    return [
        Query(
            row["source"],
            frozenset() if row["flags"] == "-" else frozenset(row["flags"].split(",")),
            row["query"],
        )
        for row in rows
    ]


SWARM_LABELS = {
    "com.docker.swarm.node_id": "node-1",
    "com.docker.swarm.service_name": "web",
    "com.docker.swarm.task_name": "web.1.abc",
    "com.docker.stack.namespace": "shop",
    "com.docker.compose.project": "shop",
}
# A network of the container's own without a bridge (needs NET_ADMIN): a veth pair inside its
# namespace, eth0 pinging a neighbour that is not there (ARP goes out of eth0 and into veth0).
# Only eth0 is exported; `lo` and `veth*` are left out, as cAdvisor does. No packet leaves.
VETH_TRAFFIC = (
    "ip link add eth0 type veth && ip addr add 10.9.9.1/24 dev eth0 && ip link set eth0 up &&"
    " ip link set veth0 up && (while :; do ping -c 1 -W 1 10.9.9.2 >/dev/null; done) &"
)


@dataclass(frozen=True)
class Verdict:
    """Which queries returned no data, against the goal."""

    unflagged: int
    missing: list[Query]
    required: int
    required_missing: list[Query]

    @property
    def share(self) -> float:
        return 1 - len(self.missing) / self.unflagged

    def report(self) -> str:
        lines = [
            f"cAdvisor compat: {self.unflagged - len(self.missing)} of {self.unflagged} "
            f"plain-Docker queries return data ({100 * self.share:.1f} %)",
            *(f"  no data: [{q.source}] {q.judged}" for q in self.missing),
            f"flagged root-cgroup/docker-label/cgroupv1-cgroupfs-id that can work here: "
            f"{self.required - len(self.required_missing)} of {self.required} return data",
        ]
        return "\n".join(lines)


def judge(has_data: Callable[[str], bool], not_here: frozenset[str] = frozenset()) -> Verdict:
    """Every query judged by `has_data(expr)`; flagged ones that need what `not_here` names
    (e.g. cgroupfs ids under the systemd driver) are not required."""
    queries = load_queries()
    unflagged = [q for q in queries if not q.flags]
    required = [q for q in queries if q.required and not q.flags & not_here]
    return Verdict(
        len(unflagged),
        [q for q in unflagged if not has_data(q.judged)],
        len(required),
        [q for q in required if not has_data(q.judged)],
    )
