"""The cgroup v2 guest: a Debian bookworm image built with mmdebstrap, booted under qemu.

The image is cached by a hash of its inputs (the package list, the wheel set, the build
scripts), so a rerun boots the cached image. Run as ``python -m tests.hosts.guest`` to build,
boot and print the phase times and the guest's results file (``--drivers rootless``: that phase
only, while working on it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

from dockpulse_stack.host_packages import ensure_debian_packages
from testkit.cadvisor_queries import load_queries

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parents[1]
CACHE = Path(os.environ.get("DOCKPULSE_GUEST_CACHE", Path.home() / ".cache/dockpulse/guest"))
IMAGE_INPUTS = ("build_image.sh", "guest-setup.sh", "guest-packages.txt")
RESULTS = PROJECT / ".guest-results"
BOOT_TIMEOUT_SECONDS = 1800
GUEST_CPUS = 2


# What building and booting the guest takes, by command (installed once, as root on Debian).
GUEST_TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "mmdebstrap": "mmdebstrap",
    "mke2fs": "e2fsprogs",
}


def hardware_kvm() -> bool:
    """Hardware KVM only: PVM's /dev/kvm boots no stock Debian kernel (issue 17)."""
    try:
        modules = Path("/proc/modules").read_text()
    except OSError:
        return False
    names = {line.split()[0] for line in modules.splitlines() if line}
    return os.access("/dev/kvm", os.W_OK) and bool(names & {"kvm_intel", "kvm_amd"})


def build_wheels(into: Path) -> None:
    """The exporter and its dependencies as wheels, for an offline install in the guest."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", f"{PROJECT}[exporter]", "-w", str(into)],
        check=True,
    )


def image_key(wheels: Path) -> str:
    """A hash of every input of the image."""
    digest = hashlib.sha256()
    for name in IMAGE_INPUTS:
        digest.update(name.encode() + b"\0" + (HERE / name).read_bytes())
    for wheel in sorted(wheels.glob("*.whl")):
        digest.update(wheel.name.encode() + b"\0")
        # The members' contents, not the zip's own bytes: those hold build timestamps. Not the
        # metadata either (the project's holds the README; a dependency change renames wheels).
        with zipfile.ZipFile(wheel) as archive:
            for member in sorted(archive.namelist()):
                if member.endswith((".dist-info/METADATA", ".dist-info/RECORD")):
                    continue
                digest.update(member.encode() + b"\0" + archive.read(member))
    return digest.hexdigest()[:16]


def wheel_set() -> Path:
    """The wheels, rebuilt each run (seconds), under the cache so the image key can use them."""
    wheels = CACHE / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    build_wheels(wheels)
    return wheels


def ensure_image() -> tuple[Path, bool]:
    """The image folder for today's inputs, and whether it had to be built."""
    wheels = wheel_set()
    image = CACHE / image_key(wheels)
    if (image / "rootfs.img").exists():
        return image, False
    for stale in CACHE.iterdir():  # one image at a time: each is a few GB
        if stale != wheels:
            shutil.rmtree(stale, ignore_errors=True)
    image.mkdir(parents=True)
    subprocess.run(["bash", str(HERE / "build_image.sh"), str(image), str(wheels)], check=True)
    return image, True


def boot(image: Path, results: Path, log: Path) -> None:
    """Boots the image (writes go to a throwaway snapshot) until the scenario powers it off."""
    # Multi-threaded TCG: one host thread per virtual CPU, so the guest's CPU burners leave the
    # exporter a CPU of its own.
    accel = ["-enable-kvm", "-cpu", "host"] if hardware_kvm() else ["-accel", "tcg,thread=multi"]
    command = [
        "qemu-system-x86_64",
        *accel,
        "-m",
        "1536",
        "-smp",
        str(GUEST_CPUS),
        "-nic",
        "none",
        "-nographic",
        "-no-reboot",
        "-kernel",
        str(image / "vmlinuz"),
        "-initrd",
        str(image / "initrd.img"),
        "-append",
        "root=/dev/vda rw console=ttyS0 quiet systemd.unified_cgroup_hierarchy=1",
        "-drive",
        f"file={image / 'rootfs.img'},if=virtio,format=raw,snapshot=on",
        "-virtfs",
        f"local,path={PROJECT},mount_tag=project,security_model=none",
    ]
    results.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        subprocess.run(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=BOOT_TIMEOUT_SECONDS,
            check=True,
        )


def guest_inputs() -> dict[str, str]:
    """Files the guest finds in its results folder: the cAdvisor queries it answers."""
    return {"queries.json": json.dumps(sorted({query.judged for query in load_queries()}))}


def run(drivers: Sequence[str] = ()) -> dict:
    """Build (cached), boot, run (every phase, or those of `drivers`); returns the guest's
    results with the phase times."""
    ensure_debian_packages(GUEST_TOOLS)
    started = time.monotonic()
    image, built = ensure_image()
    build_seconds = time.monotonic() - started
    shutil.rmtree(RESULTS, ignore_errors=True)
    RESULTS.mkdir()
    for name, text in guest_inputs().items():
        (RESULTS / name).write_text(text)
    if drivers:
        (RESULTS / "drivers").write_text(" ".join(drivers))
    booted = time.monotonic()
    boot(image, RESULTS, RESULTS / "console.log")
    results_file = RESULTS / "results.json"
    if not results_file.exists():
        raise RuntimeError(f"the guest wrote no results: see {RESULTS / 'console.log'}")
    results = json.loads(results_file.read_text())
    compat = RESULTS / "compat.json"
    results["compat"] = json.loads(compat.read_text()) if compat.exists() else None
    results["phases"] = {
        "build_seconds": round(build_seconds, 1),
        "image_built": built,
        "boot_seconds": results.get("guest_boot_seconds"),
        "guest_total_seconds": round(time.monotonic() - booted, 1),
    }
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drivers", nargs="+", default=(), help="phases (default: all)")
    outcome = run(parser.parse_args().drivers)
    print(json.dumps(outcome["phases"]))
    print(json.dumps(outcome, indent=1))
