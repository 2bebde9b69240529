"""Install the Debian packages a command needs, once, behind one lock every caller shares.

`make demo` asks for everything it will need before any parallel work starts; the lock (a thread
lock plus a file lock for other processes) still makes sure that no two `apt-get` runs of ours
ever overlap. Someone else's apt run is waited for (`DOCKPULSE_APT_WAIT` seconds, 300 by default).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from dockpulse_stack.errors import StackError

LOCK_FILE = Path("/tmp/dockpulse-apt.lock")
APT_WAIT_SECONDS = float(os.environ.get("DOCKPULSE_APT_WAIT", "300"))
LOCK_HELD = ("Could not get lock", "is held by process", "Unable to lock")
_thread_lock = threading.Lock()


def missing_packages(command_to_package: Mapping[str, str]) -> list[str]:
    """The packages of the commands that are not on PATH."""
    return sorted({pkg for cmd, pkg in command_to_package.items() if shutil.which(cmd) is None})


def ensure_debian_packages(command_to_package: Mapping[str, str]) -> None:
    """Install the package of every command not on PATH; StackError saying what to do if not."""
    needed = missing_packages(command_to_package)
    if not needed:
        return
    if shutil.which("apt-get") is None:
        raise StackError(f"{' '.join(needed)} missing and this is not Debian: install them by hand")
    if os.geteuid() != 0:
        raise StackError(
            f"{' '.join(needed)} missing; install as root: apt-get install {' '.join(needed)}"
        )
    with _thread_lock, LOCK_FILE.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        missing = missing_packages(command_to_package)  # another caller may have installed them
        if missing:
            _install(missing)
    still_missing = [cmd for cmd in command_to_package if shutil.which(cmd) is None]
    if still_missing:
        raise StackError(
            f"{', '.join(still_missing)} still not found after installing "
            f"{', '.join(missing_packages(command_to_package))}: is /usr/sbin on PATH?"
        )


def _install(packages: list[str]) -> None:
    names = " ".join(packages)
    print(f"dockpulse: installing Debian packages: {names}", file=sys.stderr, flush=True)
    _apt(["update", "-qq", "--error-on=any"], "apt-get update")
    _apt(["install", "-y", "-qq", "--no-install-recommends", *packages], f"apt-get install {names}")


def _apt(arguments: list[str], step: str) -> None:
    """Run apt-get, waiting while another apt run holds its lock; StackError when it fails."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "-o", f"DPkg::Lock::Timeout={APT_WAIT_SECONDS:.0f}", *arguments]
    deadline = time.monotonic() + APT_WAIT_SECONDS
    while True:
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode == 0:
            return
        if not any(text in result.stderr for text in LOCK_HELD) or time.monotonic() > deadline:
            raise StackError(_apt_failure(step, result.stderr))
        print("dockpulse: waiting for another apt run to finish ...", file=sys.stderr, flush=True)
        time.sleep(2)


def _apt_failure(step: str, stderr: str) -> str:
    """One line: which apt step failed, apt's first error, and what to do."""
    errors = [line for line in stderr.splitlines() if line.startswith(("E:", "Err:"))]
    reason = (errors or stderr.strip().splitlines() or ["no output"])[0].strip()
    if any(text in stderr for text in LOCK_HELD):
        advice = "another apt run holds the lock; wait for it to finish, then try again"
    elif any(word in stderr for word in ("Could not resolve", "Failed to fetch", "Unable to")):
        advice = "check the network to the package mirror (/etc/apt/sources.list*), then try again"
    else:
        advice = "fix the apt problem above, then try again"
    return f"{step} failed: {reason} ({advice})"
