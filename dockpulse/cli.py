"""`dockpulse`: the stack's own commands (engine, images, demo)."""

from __future__ import annotations

import argparse
import sys

from dockpulse.engine import EngineError, find_or_start_engine
from dockpulse.images import busybox_image, python_base_image
from dockpulse.stack_cli import STACK_COMMANDS, add_stack_commands, run_stack_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dockpulse", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("engine", help="find or start a Docker engine; print its DOCKER_HOST")
    commands.add_parser("images", help="build the local base images (busybox, Debian Python)")
    add_stack_commands(commands)
    args = parser.parse_args(argv)
    if args.command in STACK_COMMANDS:
        return run_stack_command(args)
    try:
        engine = find_or_start_engine()
    except EngineError as exc:
        print(f"dockpulse: {exc}", file=sys.stderr)
        return 1
    if args.command == "engine":
        print(engine.host)
    elif args.command == "images":
        print(busybox_image(engine))
        print(python_base_image(engine))
    return 0


if __name__ == "__main__":
    sys.exit(main())
