"""`dockpulse`: the stack's own commands (engine, images, demo, down, stress, reload,
web-config).

Every failure a user can meet ends in one line saying what failed and what to do, exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import docker
import requests

from dockpulse_stack.demo import DEMO_DIR, demo, down, stress
from dockpulse_stack.engine import discover_engine
from dockpulse_stack.errors import StackError
from dockpulse_stack.images import REPO_ROOT
from dockpulse_stack.rootfs import busybox_image, python_base_image
from dockpulse_stack.web_access import WebAccess, reload, write_users_web_configs

EXIT_FAILURE = 2


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dockpulse", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("engine", help="find or start a Docker engine; print its DOCKER_HOST")
    commands.add_parser("images", help="build the local base images (busybox, Debian Python)")
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
    stress_parser.add_argument(
        "--workers",
        type=worker_count,
        default=0,
        help="Locust worker processes under one master (0: Locust alone)",
    )
    reload_parser = commands.add_parser(
        "reload",
        help="after editing a rule: promtool check rules, then reload Prometheus and "
        "Alertmanager with the demo's credentials (a broken edit changes nothing)",
    )
    reload_parser.add_argument("--rules", type=Path, default=REPO_ROOT / "prometheus" / "rules")
    reload_parser.add_argument(
        "--alertmanager-config",
        type=Path,
        default=REPO_ROOT / "alertmanager" / "alertmanager.yml",
    )
    reload_parser.add_argument("--prometheus", default="http://127.0.0.1:9090", help="its URL")
    reload_parser.add_argument("--alertmanager", default="http://127.0.0.1:9093", help="its URL")
    reload_parser.add_argument(
        "--credentials",
        type=Path,
        default=DEMO_DIR / "web",
        help="folder of prometheus_password and alertmanager_password (the demo's)",
    )
    web_parser = commands.add_parser(
        "web-config",
        help="the web configs and password files docker-compose.yaml's secrets name "
        "(DOCKPULSE_WEB_DIR); passwords already there are kept",
    )
    web_parser.add_argument("folder", type=Path, nargs="?", default=Path("web"))
    return parser


def reload_stack(args: argparse.Namespace) -> int:
    servers = [
        WebAccess("Prometheus", args.prometheus, args.credentials / "prometheus_password"),
        WebAccess("Alertmanager", args.alertmanager, args.credentials / "alertmanager_password"),
    ]
    rule_files = sorted(args.rules.glob("*.yml"))
    for line in reload(rule_files, args.alertmanager_config, servers):
        print(f"dockpulse: {line}")
    return 0


def worker_count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(text)


def run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        return demo(follow=not args.no_follow)
    if args.command == "down":
        return down(volumes=args.volumes)
    if args.command == "stress":
        return stress(args.profile, args.duration, args.workers)
    if args.command == "reload":
        return reload_stack(args)
    if args.command == "web-config":
        for path in write_users_web_configs(args.folder):
            print(path)
        return 0
    engine = discover_engine()
    if args.command == "engine":
        print(engine.host)
    else:
        print(busybox_image(engine))
        print(python_base_image(engine))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except StackError as exc:
        print(f"dockpulse: {exc}", file=sys.stderr)
    except (docker.errors.DockerException, requests.RequestException) as exc:
        print(f"dockpulse: the Docker engine failed: {exc}", file=sys.stderr)
    except OSError as exc:
        print(f"dockpulse: {exc.strerror}: {exc.filename}", file=sys.stderr)
    except KeyboardInterrupt:
        print("dockpulse: interrupted", file=sys.stderr)
    return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
