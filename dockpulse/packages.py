"""Install the Debian packages a command needs, when it is missing and we may (root on Debian)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def ensure_debian_packages(command_to_package: dict[str, str]) -> None:
    """Install the package for every command not on PATH; a no-op when all are present."""
    missing = sorted({pkg for cmd, pkg in command_to_package.items() if shutil.which(cmd) is None})
    if not missing or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return
    print(f"dockpulse: installing Debian packages: {' '.join(missing)}", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        check=True,
        env=env,
    )
