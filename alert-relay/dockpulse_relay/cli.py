"""`dockpulse-relay`: flags and start-up only."""

from __future__ import annotations

import argparse
import logging
import sys
import threading

from dockpulse.service import service_parser, setup_logging, stop_on_signals
from dockpulse.settings import ConfigError, exit_with_config_error, split_listen_address
from dockpulse_relay.alert_log import AlertLog
from dockpulse_relay.backends import make_backend
from dockpulse_relay.config import DEFAULT_LISTEN_ADDRESS, RelayConfig, load_config
from dockpulse_relay.dispatch import Dispatcher
from dockpulse_relay.http import Webhook, make_server
from dockpulse_relay.metrics import RelayMetrics
from dockpulse_relay.store import Store, StoreError

PROGRAM = "dockpulse-relay"
SWITCH_INTERVAL_SECONDS = 0.001
log = logging.getLogger("dockpulse_relay")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return service_parser(
        PROGRAM,
        "Durable Alertmanager webhook receiver that mails alerts (SES, SMTP, outbox).",
        DEFAULT_LISTEN_ADDRESS,
    ).parse_args(argv)


class Relay:
    """The running relay: the webhook server and the dispatcher thread over one store."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.host, self.port = split_listen_address(config.listen_address)
        self.store = Store(config.store, config.store_sync)
        self.metrics = RelayMetrics(self.store.depth)
        self.dispatcher = Dispatcher(self.store, make_backend(config), config, self.metrics)
        token = config.auth_token.get_secret_value() if config.auth_token else None
        self.alert_log = AlertLog(config.alert_log)
        webhook = Webhook(
            self.store,
            self.alert_log,
            self.metrics,
            self.dispatcher.wake,
            token,
            config.max_body_bytes,
        )
        self.server = make_server(self.host, self.port, webhook, self.metrics, self.store)

    def serve_forever(self) -> None:
        # Webhook threads wait less for the GIL while the dispatcher composes a big digest.
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        threading.Thread(target=self.dispatcher.run, name="dispatcher", daemon=True).start()
        self.server.serve_forever()

    def stop(self) -> None:
        self.dispatcher.stop()
        self.server.shutdown()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    try:
        config = load_config(args.config_file, {"listen_address": args.listen_address})
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
        config.store,
        config.mail_backend,
    )
    relay.serve_forever()
    relay.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
