"""`dockpulse-relay`: flags and start-up, and `dockpulse-relay dead-letters list|requeue`."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from dockpulse.service import service_parser, setup_logging, stop_on_signals
from dockpulse.settings import (
    ConfigError,
    exit_with_config_error,
    export_secret_files,
)
from dockpulse_relay.app import Relay
from dockpulse_relay.config import DEFAULT_LISTEN_ADDRESS, load_config
from dockpulse_relay.store.base import StoreError
from dockpulse_relay.store.open import describe_store, open_store

PROGRAM = "dockpulse-relay"
# Secrets boto3 and libpq read from the environment themselves: each may come as NAME_FILE.
LIBRARY_SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "PGPASSWORD")
log = logging.getLogger("dockpulse_relay")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return service_parser(
        PROGRAM,
        "Durable Alertmanager webhook receiver that mails alerts (SES, SMTP, outbox).",
        DEFAULT_LISTEN_ADDRESS,
    ).parse_args(argv)


def dead_letters_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROGRAM} dead-letters",
        description="List the mails the relay gave up on, or queue them again (the store file "
        "from --config.file / RELAY_STORE; works while the relay runs).",
    )
    parser.add_argument("--config.file", dest="config_file", help="YAML configuration file")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="one line per dead letter: id, kind, when, error, subject")
    requeue = actions.add_parser("requeue", help="queue dead letters again")
    which = requeue.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=int, help="the dead letter's id (from `list`)")
    which.add_argument("--all", action="store_true", help="every dead letter")
    return parser


def dead_letters(argv: list[str]) -> int:
    args = dead_letters_parser().parse_args(argv)
    try:
        export_secret_files(LIBRARY_SECRETS)
        config = load_config(args.config_file, {})
    except ConfigError as exc:
        exit_with_config_error(PROGRAM, exc)
    if isinstance(config.store, Path) and not config.store.is_file():
        print(f"{PROGRAM}: store: no such file {config.store} (RELAY_STORE)", file=sys.stderr)
        return 2
    store = open_store(config.store, config.store_sync, config.lease)
    try:
        if args.action == "list":
            letters = store.dead_letters()
            for letter in letters:
                when = datetime.fromtimestamp(letter.created_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                print(f"{letter.id}\t{letter.kind}\t{when}\t{letter.error}\t{letter.subject}")
            where = describe_store(config.store)
            print(f"{len(letters)} dead letter(s) in {where}", file=sys.stderr)
            return 0
        count = store.requeue(None if args.all else [args.id], time.time())
    except StoreError as exc:
        print(f"{PROGRAM}: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    if not args.all and count == 0:
        where = describe_store(config.store)
        print(f"{PROGRAM}: id: no dead letter {args.id} in {where}", file=sys.stderr)
        return 2
    print(f"re-queued {count} dead letter(s); the running relay sends them on its next pass")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["dead-letters"]:
        return dead_letters(argv[1:])
    args = parse_args(argv)
    setup_logging(args.log_level)
    try:
        flags = {"listen_address": args.listen_address, "web_config_file": args.web_config_file}
        export_secret_files(LIBRARY_SECRETS)
        config = load_config(args.config_file, flags)
        relay = Relay(config)
    except ConfigError as exc:
        exit_with_config_error(PROGRAM, exc)
    except OSError as exc:
        print(f"{PROGRAM}: cannot start: {exc}", file=sys.stderr)
        return 1
    try:
        relay.store.check()
    except StoreError as exc:  # keep running: webhooks get 503 and Alertmanager retries
        log.error("%s; webhooks answer 503 until it can be written", exc)

    stop_on_signals(relay.stop)
    log.info(
        "listening on %s:%d, store %s, mail backend %s",
        relay.host,
        relay.port,
        describe_store(config.store),
        config.mail_backend,
    )
    relay.serve_forever()
    relay.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
