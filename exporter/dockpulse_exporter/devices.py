"""Block devices as cAdvisor names them (`/dev/vda`), from /proc/diskstats."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

RELOAD_SECONDS = 60.0
IGNORED_DEVICES = ("loop", "ram", "zram")


@dataclass(frozen=True, slots=True)
class DiskStats:
    """One /proc/diskstats line: completed I/Os and sectors (512 bytes) per direction."""

    name: str
    reads: int
    read_sectors: int
    writes: int
    write_sectors: int
    in_progress: int


def parse_diskstats(text: str) -> dict[str, DiskStats]:
    """/proc/diskstats by "major:minor"."""
    disks: dict[str, DiskStats] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 14:
            continue
        disks[f"{fields[0]}:{fields[1]}"] = DiskStats(
            name="/dev/" + fields[2],
            reads=int(fields[3]),
            read_sectors=int(fields[5]),
            writes=int(fields[7]),
            write_sectors=int(fields[9]),
            in_progress=int(fields[11]),
        )
    return disks


class DeviceNames:
    """Maps "major:minor" to /dev/<name>; an unknown number re-reads the table (at most once
    a minute) and is kept as "major:minor" if still unknown."""

    def __init__(self, proc_root: Path) -> None:
        self.path = proc_root / "diskstats"
        self._names: dict[str, str] = {}
        self._loaded_at = -RELOAD_SECONDS
        self.stats()

    def stats(self) -> dict[str, DiskStats]:
        """The current diskstats (also refreshes the names)."""
        try:
            disks = parse_diskstats(self.path.read_text())
        except OSError:
            disks = {}
        self._names = {number: disk.name for number, disk in disks.items()}
        self._loaded_at = time.monotonic()
        return disks

    def name(self, number: str) -> str:
        found = self._names.get(number)
        if found is None and time.monotonic() - self._loaded_at > RELOAD_SECONDS:
            self.stats()
            found = self._names.get(number)
        return found or number
