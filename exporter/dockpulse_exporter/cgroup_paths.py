"""Finding a container's cgroup directories, for every layout Docker leaves on a host.

Layouts covered (each has a golden file tree in the tests):
- cgroup v1 or v2, cgroupfs driver: `/docker/<id>` (or `<cgroup-parent>/<id>`);
- systemd driver: `/system.slice/docker-<id>.scope`, with a `--cgroup-parent` slice expanded the
  way systemd nests slices (`a-b.slice` lives in `a.slice/a-b.slice`);
- rootless Docker: `/user.slice/user-<uid>.slice/user@<uid>.service/.../docker-<id>.scope`,
  found through the container's `/proc/<pid>/cgroup`;
- the exporter in its own container with a private cgroup namespace (v2): `/proc/<pid>/cgroup`
  is then relative to the exporter's namespace (`0::/../docker-<id>.scope`), and so is the root
  of the host's cgroup mount in `/proc/self/mountinfo` (`/../..`); the two are resolved
  against each other (`relative_to_mount`).

The `id` label is the path relative to the mounted cgroup root, which is what cAdvisor exports.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path

V1_CONTROLLERS = ("cpuacct", "cpu", "memory", "blkio")


@dataclass(frozen=True, slots=True)
class Location:
    """Where a container's cgroup files are, and its cgroup path as cAdvisor's `id`."""

    cgroup_id: str
    directories: dict[str, Path]  # controller ("" on v2) -> directory


def expand_slice(slice_name: str) -> str:
    """systemd's nesting of a slice: `a-b-c.slice` -> `a.slice/a-b.slice/a-b-c.slice`."""
    stem = slice_name.removesuffix(".slice")
    if stem in ("", "-"):
        return ""
    parts = stem.split("-")
    return "/".join("-".join(parts[: i + 1]) + ".slice" for i in range(len(parts)))


def candidate_paths(container_id: str, cgroup_parent: str, driver: str = "") -> list[str]:
    """Cgroup paths Docker gives a container, most likely first.

    `driver` is Docker's `CgroupDriver` (`docker info`): under `systemd` a container is the
    scope `docker-<id>.scope` in its slice (`system.slice` unless `--cgroup-parent` names
    one), under `cgroupfs` the directory `<parent>/<id>` (`/docker` by default). Unknown ("")
    when the engine has not told yet: both forms, the parent's shape deciding the first.
    """
    parent = cgroup_parent.strip("/")
    is_slice = parent.endswith(".slice") and "/" not in parent
    systemd = (
        posixpath.join(expand_slice(parent), f"docker-{container_id}.scope")
        if is_slice
        else f"system.slice/docker-{container_id}.scope"
    )
    cgroupfs = f"{parent or 'docker'}/{container_id}"
    if driver == "systemd":
        return [systemd, cgroupfs]
    if driver == "cgroupfs":
        return [cgroupfs, systemd]
    candidates = [f"docker/{container_id}", f"system.slice/docker-{container_id}.scope"]
    if is_slice:
        candidates.insert(0, systemd)
    elif parent:
        candidates.insert(0, cgroupfs)
    return candidates


def mount_roots(mountinfo: str, cgroup_root: Path) -> dict[str, str]:
    """The cgroup path each mount under `cgroup_root` shows (field 4 of mountinfo), by
    controller ("" for the v2 mount). A mount from the host seen inside a private cgroup
    namespace shows a root like `/../..`."""
    roots: dict[str, str] = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        root, mount_point = fields[3], Path(fields[4])
        fs_type = fields[fields.index("-") + 1]
        if fs_type == "cgroup2" and mount_point == cgroup_root:
            roots[""] = root
        elif fs_type == "cgroup" and mount_point.parent == cgroup_root:
            for controller in mount_point.name.split(","):
                roots[controller] = root
    return roots


def _split(path: str) -> tuple[int, list[str]]:
    """A namespace-relative cgroup path as (levels up, components down)."""
    ups, down = 0, []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if down:
                down.pop()
            else:
                ups += 1
        else:
            down.append(part)
    return ups, down


def relative_to_mount(cgroup_path: str, mount_root: str, base: Path) -> str | None:
    """`cgroup_path` (from /proc/<pid>/cgroup) relative to the cgroup mount at `base`, whose
    root mountinfo shows as `mount_root`; both are in the reader's cgroup-namespace
    coordinates. None when the cgroup is not below the mount.

    In a private namespace the mount of the host's tree shows as `/../..` (the namespace root
    is two levels down), and a sibling container as `/../docker-<id>.scope`: the part of the
    path above the namespace root that the two do not share is not written anywhere, so it is
    found by looking for the one directory of the mount where the rest of the path exists.
    """
    path_ups, path_down = _split(cgroup_path)
    mount_ups, mount_down = _split(mount_root)
    if mount_down:
        if mount_ups or path_ups or path_down[: len(mount_down)] != mount_down:
            return None
        return "/".join(path_down[len(mount_down) :]) or "."
    if path_ups > mount_ups:
        return None
    unknown = mount_ups - path_ups  # namespace-root ancestors between mount root and path
    down = "/".join(path_down)
    if unknown == 0:
        return down or "."
    pattern = "/".join(["*"] * unknown + ([down] if down else []))
    matches = [m for m in base.glob(pattern) if m.is_dir()]
    if len(matches) != 1:
        return None
    return matches[0].relative_to(base).as_posix()


class CgroupLocator:
    """Locates containers' cgroups under `root` (usually /sys/fs/cgroup), v1 or v2."""

    def __init__(self, root: Path, proc_root: Path) -> None:
        self.root = root
        self.driver = ""  # Docker's CgroupDriver, once the engine has told (see candidate_paths)
        # Where the engine puts containers with no --cgroup-parent, as seen in a running one's
        # /proc/<pid>/cgroup, by leaf form ("docker-<id>.scope" or "<id>"): rootless Docker's
        # user@<uid>.service slice cannot be guessed from Docker's naming.
        self.seen_parents: dict[bool, str] = {}
        self.proc_root = proc_root
        self.unified = (root / "cgroup.controllers").exists()
        try:
            mountinfo = (proc_root / "self" / "mountinfo").read_text()
        except OSError:
            mountinfo = ""
        self.mount_roots = mount_roots(mountinfo, root)

    def locate(self, container_id: str, pid: int, cgroup_parent: str) -> Location | None:
        """From the container's /proc/<pid>/cgroup when visible, else from Docker's naming."""
        location = self._from_proc(pid) if pid > 0 else None
        if location is not None and not cgroup_parent:
            parent, _, leaf = location.cgroup_id.rpartition("/")
            if leaf in (container_id, f"docker-{container_id}.scope"):
                self.seen_parents[leaf != container_id] = parent
        return location or self._from_candidates(container_id, cgroup_parent)

    def expected_id(self, container_id: str, cgroup_parent: str) -> str:
        """The `id` a container not running (no cgroup to look at) gets: Docker's naming under
        its cgroup driver, in the parent running containers were seen in."""
        parent, _, leaf = candidate_paths(container_id, cgroup_parent, self.driver)[0].rpartition(
            "/"
        )
        seen = self.seen_parents.get(leaf != container_id) if not cgroup_parent else None
        return f"{seen}/{leaf}" if seen is not None else f"/{parent}/{leaf}"

    def _controller_dir(self, controller: str, relative: str) -> Path:
        base = self.root / controller if controller else self.root
        return base if relative == "." else base / relative

    def _from_proc(self, pid: int) -> Location | None:
        try:
            lines = (self.proc_root / str(pid) / "cgroup").read_text().splitlines()
        except OSError:
            return None
        wanted = ("",) if self.unified else V1_CONTROLLERS
        directories: dict[str, Path] = {}
        cgroup_id = ""
        for line in lines:
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                if controller not in wanted:
                    continue
                base = self._controller_dir(controller, ".")
                relative = relative_to_mount(path, self.mount_roots.get(controller, "/"), base)
                if relative is None:
                    continue
                directories[controller] = self._controller_dir(controller, relative)
                if controller in ("", "cpuacct"):
                    cgroup_id = "/" if relative == "." else "/" + relative
        if all(c in directories and directories[c].is_dir() for c in wanted) and cgroup_id:
            return Location(cgroup_id, directories)
        return None

    def _from_candidates(self, container_id: str, cgroup_parent: str) -> Location | None:
        for relative in candidate_paths(container_id, cgroup_parent, self.driver):
            if self.unified:
                if (self.root / relative / "cpu.stat").exists():
                    return Location("/" + relative, {"": self.root / relative})
            elif (self.root / "cpuacct" / relative / "cpuacct.usage").exists():
                directories = {c: self.root / c / relative for c in V1_CONTROLLERS}
                return Location("/" + relative, directories)
        return None
