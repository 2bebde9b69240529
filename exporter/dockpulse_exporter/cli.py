"""`dockpulse-exporter`: flags and start-up only."""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import threading
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.process_collector import ProcessCollector

from dockpulse.service import service_parser, setup_logging, stop_on_signals
from dockpulse.settings import ConfigError, exit_with_config_error, split_listen_address
from dockpulse.web_config import load_web_config
from dockpulse_exporter.cgroups import CgroupReader, read_machine
from dockpulse_exporter.collector import ContainerMetrics, ExporterCollector
from dockpulse_exporter.config import DEFAULT_LISTEN_ADDRESS, ExporterConfig, load_config
from dockpulse_exporter.context import ContainerContext, ContextLimits
from dockpulse_exporter.docker_watch import DockerWatcher
from dockpulse_exporter.events import EventRings
from dockpulse_exporter.exposition import Exposition
from dockpulse_exporter.gc_pauses import LongLivedObjects
from dockpulse_exporter.http import make_server
from dockpulse_exporter.label_probes import LabelProbes
from dockpulse_exporter.machine import FilesystemSampler
from dockpulse_exporter.model import Container
from dockpulse_exporter.probes import ProbeRunner
from dockpulse_exporter.sampler import Sampler

log = logging.getLogger("dockpulse_exporter")
SWITCH_INTERVAL_SECONDS = 0.001
# Process metrics are re-rendered at least this often (and after every refresh and probe run).
REST_SECONDS = 5.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = service_parser(
        "dockpulse-exporter",
        "Prometheus exporter for Docker containers (cAdvisor-compatible metrics).",
        DEFAULT_LISTEN_ADDRESS,
    )
    parser.add_argument("--docker.host", dest="docker_host", help="Docker engine URL")
    parser.add_argument(
        "--refresh.interval", dest="refresh_interval", help="background refresh interval (5s)"
    )
    return parser.parse_args(argv)


class Exporter:
    """The running exporter: watcher, sampler and probe threads behind one HTTP server."""

    def __init__(self, config: ExporterConfig) -> None:
        self.config = config
        self._stopped = threading.Event()
        self.host, self.port = split_listen_address(config.listen_address)
        context = config.container_context
        self.events = EventRings(context.events_per_container, context.removed_kept_for)
        self.watcher = DockerWatcher(
            config.docker_host,
            config.resync_interval,
            on_change=self._on_docker_change,
            on_event=self._on_container_event,
        )
        self.probes = ProbeRunner(config.probes, workers=config.probe_workers)
        self.label_probes = LabelProbes() if config.label_probes else None
        container_metrics = ContainerMetrics(config.container_labels)
        rest = CollectorRegistry(auto_describe=False)
        rest.register(
            ExporterCollector(
                snapshot=lambda: self.sampler.snapshot,
                probe_results=self.probes.results,
                errors_total=lambda: (
                    self.watcher.errors_total
                    + self.sampler.errors_total
                    + self.filesystem.errors_total
                ),
                machine=read_machine(config.proc_root),
                phases=lambda: self.exposition.phase_seconds,
            )
        )
        ProcessCollector(registry=rest)
        self.exposition = Exposition(
            lambda: container_metrics.families(self.sampler.snapshot), rest
        )
        self.probes.on_result = self.exposition.update_rest
        cgroups = CgroupReader(config.cgroup_root, config.proc_root)
        self.filesystem = FilesystemSampler(
            self.watcher,
            cgroups.devices,
            config.filesystem_interval,
            config.docker_root_dir,
            config.proc_root,
        )
        self.long_lived = LongLivedObjects()
        self.sampler = Sampler(
            self.watcher,
            cgroups,
            config.refresh_interval,
            on_refresh=self._on_refresh,
            filesystem=self.filesystem,
            proc_root=config.proc_root,
        )
        self.context = ContainerContext(
            config.docker_host,
            self.events,
            self.watcher.containers,
            lambda container_id: self.sampler.memory_peak(container_id),
            ContextLimits(
                context.log_lines,
                context.line_chars,
                context.total_chars,
                context.timeout,
                config.mail_logs,
            ),
        )
        self.server = make_server(
            self.host,
            self.port,
            self.exposition,
            config.http_read_timeout,
            config.http_max_connections,
            web_config=load_web_config(config.web_config_file),
            container_context=self.context.answer,
        )

    def _on_refresh(self) -> None:
        self.exposition.update_containers()
        self.long_lived.settle()

    def _on_container_event(self, event: dict[str, Any], container: Container | None) -> None:
        """Into the container's ring; a die or an OOM keeps the last memory peak sampled."""
        peak = None
        if container is not None and event.get("Action") in ("die", "oom"):
            peak = self.sampler.memory_peak(container.id)
        self.events.record(event, container, peak)

    def _on_docker_change(self) -> None:
        self.sampler.request_refresh()
        if self.label_probes is not None:
            file_names = {probe.name for probe in self.config.probes}
            self.probes.set_label_probes(
                self.label_probes.targets(self.watcher.containers(), file_names)
            )

    def start(self) -> None:
        self.exposition.update_rest()
        for name, target in (
            ("docker-watch", self.watcher.run),
            ("sampler", self.sampler.run),
            ("filesystem", self.filesystem.run),
            ("rest", lambda: self.exposition.keep_rest_fresh(REST_SECONDS, self._stopped)),
        ):
            threading.Thread(target=target, name=name, daemon=True).start()
        self.probes.start()

    def serve_forever(self) -> None:
        # A scrape thread waits less for the GIL while the sampler renders a big refresh.
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        self.server.serve_forever()

    def stop(self) -> None:
        self.watcher.stop()
        self._stopped.set()
        self.sampler.stop()
        self.filesystem.stop()
        self.probes.stop()
        self.server.shutdown()


def raise_open_file_limit() -> None:
    """Each container keeps a few cgroup files open: allow as many as the hard limit does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_open_file_limit()
    setup_logging(args.log_level)
    flags = {
        "listen_address": args.listen_address,
        "web_config_file": args.web_config_file,
        "docker_host": args.docker_host,
        "refresh_interval": args.refresh_interval,
    }
    try:
        config = load_config(args.config_file, flags)
        exporter = Exporter(config)
    except ConfigError as exc:
        exit_with_config_error("dockpulse-exporter", exc)
    except OSError as exc:
        print(f"dockpulse-exporter: cannot start: {exc}", file=sys.stderr)
        return 1

    stop_on_signals(exporter.stop)
    exporter.start()
    log.info("listening on %s:%d, Docker at %s", exporter.host, exporter.port, config.docker_host)
    exporter.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
