"""`dockpulse-loadtest`: Locust alone, or a Locust master with N local workers (Locust's own
master/worker mode), for load that one Python process cannot make.

    dockpulse-loadtest [LOCUST OPTIONS...]                    # LOADTEST_WORKERS=0: plain locust
    LOADTEST_WORKERS=4 dockpulse-loadtest --headless -t 60s   # a master and 4 workers

The options go to the master (or the single process); every process reads the locustfile and
STRESS_LEVEL from the environment (LOCUST_LOCUSTFILE, as Locust does). The master runs the
profile's LoadTestShape and spreads its users over the workers, which report their requests to
it: its statistics, CSV and metrics (:9646) are the totals. The workers connect to the master on
127.0.0.1:LOCUST_MASTER_BIND_PORT (5557); workers on other machines can join the same master with
`locust --worker --master-host=THIS_HOST`, if its --master-bind-host lets them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

WORKERS_VARIABLE = "LOADTEST_WORKERS"
DEFAULT_MASTER_PORT = "5557"
WORKER_GRACE_SECONDS = 1.0  # after the master exits, for workers it told to quit
WORKER_QUIT_SECONDS = 5.0
EXIT_USAGE = 2


class UsageError(ValueError):
    """A setting of the launcher is not valid; the message names it."""


def locust_command() -> str:
    """The `locust` next to this Python (the venv's), else the one on PATH."""
    beside = Path(sys.executable).with_name("locust")
    return str(beside) if beside.exists() else "locust"


def worker_count(environ: dict[str, str]) -> int:
    raw = environ.get(WORKERS_VARIABLE, "").strip() or "0"
    if not raw.isdigit():
        raise UsageError(f"{WORKERS_VARIABLE}: expected a whole number >= 0, got {raw!r}")
    return int(raw)


def master_port(environ: dict[str, str]) -> str:
    raw = environ.get("LOCUST_MASTER_BIND_PORT", "").strip() or DEFAULT_MASTER_PORT
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise UsageError(f"LOCUST_MASTER_BIND_PORT: expected a port number, got {raw!r}")
    return raw


def master_args(workers: int, port: str, args: list[str]) -> list[str]:
    """The master's command: bound to loopback, waiting (up to a minute) for its workers."""
    return [
        locust_command(),
        "--master",
        "--master-bind-host=127.0.0.1",
        f"--master-bind-port={port}",
        f"--expect-workers={workers}",
        "--expect-workers-max-wait=60",
        *args,
    ]


def worker_args(port: str) -> list[str]:
    return [locust_command(), "--worker", "--master-host=127.0.0.1", f"--master-port={port}"]


def run_distributed(workers: int, args: list[str], environ: dict[str, str]) -> int:
    """Start the master and `workers` workers; return the master's exit code once all stopped."""
    port = master_port(environ)
    # Own sessions: a Ctrl-C reaches the launcher alone, which passes it on to the master once;
    # the master then tells its workers to quit (and what is left is stopped: stop_workers).
    master = subprocess.Popen(master_args(workers, port, args), env=environ, start_new_session=True)
    worker_processes = [
        subprocess.Popen(worker_args(port), env=environ, start_new_session=True)
        for _ in range(workers)
    ]

    def forward(_signum: int, _frame: FrameType | None) -> None:
        # SIGTERM: Locust's own handler shuts a master down cleanly, in any state (a SIGINT
        # is a KeyboardInterrupt, which gevent may deliver late or not at all).
        if master.poll() is None:
            master.terminate()

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    code = master.wait()
    stop_workers(worker_processes)
    return code


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    """Once the master has exited, its workers have no one to report to; and a master does
    not always tell them to quit (one whose run was ended from the web UI has forgotten them),
    so they would wait for its heartbeat for a minute. They get WORKER_GRACE_SECONDS in all to
    quit; each one left is terminated (Locust's own clean shutdown), and killed if still there
    after WORKER_QUIT_SECONDS."""
    deadline = time.monotonic() + WORKER_GRACE_SECONDS
    for worker in workers:
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(timeout=max(0.0, deadline - time.monotonic()))
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    for worker in workers:
        try:
            worker.wait(timeout=WORKER_QUIT_SECONDS)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    environ = dict(os.environ)
    try:
        workers = worker_count(environ)
        if workers == 0:
            command = locust_command()
            os.execvp(command, [command, *args])  # plain Locust, as before
        return run_distributed(workers, args, environ)
    except UsageError as exc:
        print(f"dockpulse-loadtest: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
