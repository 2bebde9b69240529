"""Chaos for the alert path: one row per scenario (incidents, mailed, lost, duplicated, time to
first mail), on real components - the relay, moto's SES (and its IAM mode), aiosmtpd, the real
Prometheus and Alertmanager binaries. The scenarios are in testkit/chaos_scenarios.py; the
quick versions run in `make test` (tests/relay/test_chaos.py).

    .venv/bin/python bench/chaos.py [--quick] [--only flapping,kill-9,...] [--ses-outage 600]

Needs root for the disk-full scenario (a 1 MiB tmpfs under /tmp, unmounted afterwards).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from pathlib import Path

from testkit.chaos_scenarios import SCENARIOS, Row, Scale, Table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the sizes make test uses")
    parser.add_argument("--only", default="", help=f"comma-separated: {', '.join(SCENARIOS)}")
    parser.add_argument("--ses-outage", type=float, help="seconds SES is unreachable (default 60)")
    args = parser.parse_args()
    scale = Scale.quick() if args.quick else Scale()
    if args.ses_outage:
        scale.ses_outage = args.ses_outage
    chosen = [name for name in args.only.split(",") if name] or list(SCENARIOS)
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        print(f"chaos: --only: unknown scenario(s) {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    table = Table()
    with tempfile.TemporaryDirectory(prefix="dp-chaos-") as work:
        for name in chosen:
            started = time.monotonic()
            try:
                row = SCENARIOS[name](Path(work), scale)
            except Exception as exc:  # one broken scenario still leaves a row
                traceback.print_exc()
                row = Row(name, 0, 0, 0, 0, None, f"FAILED: {exc!r}")
            row.note += f" [{time.monotonic() - started:.0f}s]"
            table.rows.append(row)
            print(" | ".join(row.cells()), flush=True)
    print()
    print(table.render())
    return 1 if any(row.lost or row.note.startswith("FAILED") for row in table.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
