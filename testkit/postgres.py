"""A throwaway PostgreSQL server from the Debian `postgresql` package, for tests and demos.

`initdb` makes a data directory in a temporary folder owned by the `postgres` user (PostgreSQL
refuses to run as root; as root the processes run as `postgres`, like `runuser -u postgres --`,
but without a wrapper process in between, so signals reach the server). The server listens on
127.0.0.1 only, with `trust` authentication, and can be stopped and started again on the same
port and data, so a test can watch an application lose and regain its database.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg2

from dockpulse_stack.host_packages import ensure_debian_packages
from testkit.helpers import free_port

DEFAULT_BIN_DIR = Path("/usr/lib/postgresql/15/bin")
SERVER_USER = "postgres"


class PostgresError(RuntimeError):
    """The PostgreSQL server could not be set up or started."""


class PostgresServer:
    """One PostgreSQL server process on 127.0.0.1:`port`; `start()`/`stop()` may repeat."""

    def __init__(self, port: int | None = None, bin_dir: Path = DEFAULT_BIN_DIR) -> None:
        self.port = port or free_port()
        self.bin_dir = bin_dir
        self.user = SERVER_USER if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self.process: subprocess.Popen[bytes] | None = None
        self.root: Path | None = None

    @property
    def data_dir(self) -> Path:
        assert self.root is not None, "call start() first"
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        """A libpq URL for `database` as the superuser (trust authentication, no password)."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A fresh, empty database (named `name`, else a new name); its URL."""
        name = name or f"db_{uuid.uuid4().hex[:12]}"
        connection = psycopg2.connect(self.url())
        connection.autocommit = True  # CREATE DATABASE runs outside a transaction
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE {name}")
        finally:
            connection.close()
        return self.url(name)

    def _run_as(self) -> dict[str, Any]:
        """Popen arguments that drop root to the `postgres` user (no-op when not root)."""
        if os.geteuid() != 0:
            return {}
        return {"user": SERVER_USER, "group": SERVER_USER, "extra_groups": []}

    def _init(self) -> None:
        ensure_debian_packages({str(self.bin_dir / "initdb"): "postgresql"})
        if not (self.bin_dir / "initdb").exists():
            raise PostgresError(f"{self.bin_dir}/initdb not found (Debian package postgresql-15)")
        self.root = Path(tempfile.mkdtemp(prefix="dockpulse-postgres-"))
        if os.geteuid() == 0:
            shutil.chown(self.root, user=SERVER_USER, group=SERVER_USER)
        result = subprocess.run(
            [
                str(self.bin_dir / "initdb"),
                f"--pgdata={self.data_dir}",
                "--auth=trust",
                f"--username={self.user}",
                "--encoding=UTF8",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            cwd=self.root,
            **self._run_as(),
        )
        if result.returncode != 0:
            raise PostgresError(f"initdb failed: {result.stderr.strip()[-500:]}")

    def start(self, timeout: float = 30.0) -> PostgresServer:
        """Start the server (creating its data directory the first time); wait until it answers."""
        if self.process is not None:
            return self
        if self.root is None:
            self._init()
        log = (self.root / "postgres.log").open("ab")  # type: ignore[operator]
        self.process = subprocess.Popen(
            [
                str(self.bin_dir / "postgres"),
                *("-D", str(self.data_dir), "-p", str(self.port)),
                *("-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.root}"),
                *("-c", "fsync=off", "-c", "max_connections=100"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.root,
            **self._run_as(),
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise PostgresError(f"postgres exited with {code}; see {self.root}/postgres.log")
            if self._answers():
                return self
            time.sleep(0.1)
        self.stop()
        raise PostgresError(f"postgres did not answer within {timeout:.0f}s")

    def _answers(self) -> bool:
        result = subprocess.run(
            [str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-t", "1"],
            capture_output=True,
        )
        return result.returncode == 0

    def stop(self, timeout: float = 20.0) -> None:
        """Fast shutdown: client connections are cut, like a crashed or stopped database."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def remove(self) -> None:
        """Stop the server and delete its data directory."""
        self.stop()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.remove()
