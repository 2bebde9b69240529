"""Relay failover: two `dockpulse-relay` replicas on one PostgreSQL behind two Alertmanager
peers, a burst of critical alerts, one replica killed (kill -9) while it holds a mail and one
peer stopped halfway (testkit/relay_replicas.py). Per round: incidents, mailed, lost,
duplicates (and those of incidents the killed replica did not hold: a mail it handed to the mail
server but could not mark sent goes again, with every alert it carries), the mails the killed
replica held, and the takeover time (kill -> the last of those mails sent by the other replica;
the lease is RELAY_LEASE, 5 s by default).

    .venv/bin/python -m bench.relay_failover [--rounds 3] [--incidents 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from testkit.postgres import PostgresServer
from testkit.relay_replicas import relay_failover


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--incidents", type=int, default=200)
    args = parser.parse_args()
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="dp-relay-failover-") as folder,
        PostgresServer() as postgres,
    ):
        for number in range(args.rounds):
            work = Path(folder) / f"round-{number}"
            work.mkdir()
            result = relay_failover(work, postgres, incidents=args.incidents)
            results.append(result)
            print(f"round {number + 1}: " + " | ".join(result.cells()), flush=True)
    takeovers = [r.takeover_seconds for r in results if r.takeover_seconds is not None]
    print(
        f"{args.rounds} rounds of {args.incidents} incidents: "
        f"mailed {sum(r.mailed for r in results)}, lost {sum(r.lost for r in results)}, "
        f"duplicates {sum(r.duplicates for r in results)} "
        f"({sum(r.duplicates_not_held for r in results)} not held by the killed replica), "
        f"mails held by the killed replica {sum(r.claimed_at_kill for r in results)} "
        f"({sum(r.held_incidents for r in results)} incidents); "
        + (
            f"takeover median {statistics.median(takeovers):.1f} s, max {max(takeovers):.1f} s"
            if takeovers
            else "takeover: none measured"
        )
    )


if __name__ == "__main__":
    main()
