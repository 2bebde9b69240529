"""`dockpulse-relay`: flags and start-up only."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from dockpulse.settings import ConfigError, exit_with_config_error, split_listen_address
from dockpulse_relay.alert_log import AlertLog
from dockpulse_relay.backends import make_backend
from dockpulse_relay.config import RelayConfig, load_config
from dockpulse_relay.dispatch import Dispatcher
from dockpulse_relay.http import Webhook, make_server
from dockpulse_relay.metrics import RelayMetrics
from dockpulse_relay.store import Store, StoreError

PROGRAM = "dockpulse-relay"
SWITCH_INTERVAL_SECONDS = 0.001
log = logging.getLogger("dockpulse_relay")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Durable Alertmanager webhook receiver that mails alerts (SES, SMTP, outbox).",
    )
    parser.add_argument("--config.file", dest="config_file", help="YAML configuration file")
    parser.add_argument(
        "--web.listen-address", dest="listen_address", help="HOST:PORT (default 127.0.0.1:9095)"
    )
    parser.add_argument("--log.level", dest="log_level", default="info")
    return parser.parse_args(argv)


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
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
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

    def shut_down(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=relay.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
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
