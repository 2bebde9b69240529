"""The `dockpulse demo | down | stress` subcommands: flags only; the work is in `stack.py`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dockpulse.engine import EngineError
from dockpulse.stack import StackError, demo, down, stress

STACK_COMMANDS = ("demo", "down", "stress")


def add_stack_commands(commands: Any) -> None:
    """Add the stack's subcommands to the `dockpulse` parser's subparsers."""
    demo_parser = commands.add_parser(
        "demo", help="build and start the whole stack on this machine, then follow its logs"
    )
    demo_parser.add_argument("--no-follow", action="store_true", help="return once the stack is up")
    down_parser = commands.add_parser(
        "down", help="stop the demo stack (and the Docker engine, if the demo started it)"
    )
    down_parser.add_argument(
        "--volumes", action="store_true", help="also delete its data (Prometheus, relay store)"
    )
    stress_parser = commands.add_parser("stress", help="one load run against the demo stack")
    stress_parser.add_argument("profile", help="STRESS_LEVEL, e.g. normal or cpu-intensive")
    stress_parser.add_argument("--duration", default="5m", help="how long, e.g. 60s or 5m")


def run_stack_command(args: argparse.Namespace) -> int:
    try:
        if args.command == "demo":
            return demo(follow=not args.no_follow)
        if args.command == "down":
            return down(volumes=args.volumes)
        return stress(args.profile, args.duration)
    except (StackError, EngineError, RuntimeError) as exc:
        print(f"dockpulse: {exc}", file=sys.stderr)
        return 1
