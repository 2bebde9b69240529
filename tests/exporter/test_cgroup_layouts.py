"""Locating cgroups in every layout Docker leaves, on file trees built from the documented formats.

No cgroup v2 kernel is reachable here (v1 + an empty unified mount), so v2, systemd, rootless and
private-namespace layouts are proved on trees laid out as the kernel documents them
(Documentation/admin-guide/cgroup-v2.rst: `/proc/<pid>/cgroup` is `0::<path>`, relative to the
reader's cgroup namespace, and cgroup-v1: `<id>:<controllers>:<path>`; proc(5): mountinfo's
fourth field is the mount's root within the filesystem, also namespace-relative for cgroupfs)
and as systemd names units (systemd.slice(5): `a-b.slice` is nested in `a.slice`; Docker's
systemd driver runs a container in `docker-<id>.scope`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dockpulse_exporter.cgroup_paths import CgroupLocator, candidate_paths, expand_slice
from dockpulse_exporter.cgroups import CgroupReader
from tests.exporter.test_golden import CONTAINER_ID, make_container, write_tree

PID = 4242
V2_FILES = {
    "cpu.stat": "usage_usec 1000000\nuser_usec 600000\nsystem_usec 400000\n",
    "memory.current": "4096\n",
    "memory.stat": "anon 1024\nfile 2048\ninactive_file 1024\n",
}
V1_FILES = {
    "cpuacct/cpuacct.usage": "1000000000\n",
    "cpuacct/cpuacct.stat": "user 60\nsystem 40\n",
    "cpu/cpu.stat": "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n",
    "memory/memory.usage_in_bytes": "4096\n",
    "memory/memory.stat": "total_rss 1024\ntotal_cache 2048\ntotal_inactive_file 1024\n",
    "blkio/blkio.throttle.io_service_bytes_recursive": "Total 0\n",
    "blkio/blkio.throttle.io_serviced_recursive": "Total 0\n",
}


def v2_mountinfo(root: Path, mount_root: str = "/") -> str:
    return (
        f"30 24 0:26 {mount_root} {root} rw,nosuid,nodev,noexec,relatime shared:4 - "
        "cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
    )


def v2_tree(tmp_path: Path, host_path: str, proc_path: str, mount_root: str = "/") -> Path:
    root = tmp_path / "sys"
    write_tree(
        tmp_path,
        {
            "sys/cgroup.controllers": "cpuset cpu io memory pids\n",
            **{f"sys{host_path}/{name}": text for name, text in V2_FILES.items()},
            f"proc/{PID}/cgroup": f"0::{proc_path}\n",
            "proc/self/mountinfo": v2_mountinfo(root, mount_root),
        },
    )
    return root


LAYOUTS_V2 = {
    # name: (path on the host, as /proc/<pid>/cgroup shows it, mountinfo root)
    "systemd driver": (
        f"/system.slice/docker-{CONTAINER_ID}.scope",
        f"/system.slice/docker-{CONTAINER_ID}.scope",
        "/",
    ),
    "cgroupfs driver": (f"/docker/{CONTAINER_ID}", f"/docker/{CONTAINER_ID}", "/"),
    "rootless (systemd user instance)": (
        f"/user.slice/user-1000.slice/user@1000.service/user.slice/docker-{CONTAINER_ID}.scope",
        f"/user.slice/user-1000.slice/user@1000.service/user.slice/docker-{CONTAINER_ID}.scope",
        "/",
    ),
    # The exporter in /system.slice/docker-<exporter>.scope with its own cgroup namespace and
    # the host's cgroupfs bind-mounted: both paths are relative to the exporter's cgroup.
    "private namespace, host tree mounted": (
        f"/system.slice/docker-{CONTAINER_ID}.scope",
        f"/../docker-{CONTAINER_ID}.scope",
        "/../..",
    ),
    "private namespace, nested slice": (
        f"/my.slice/my-app.slice/docker-{CONTAINER_ID}.scope",
        f"/../../my.slice/my-app.slice/docker-{CONTAINER_ID}.scope",
        "/../..",
    ),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS_V2))
def test_v2_layouts_found_through_proc(tmp_path: Path, layout: str) -> None:
    host_path, proc_path, mount_root = LAYOUTS_V2[layout]
    root = v2_tree(tmp_path, host_path, proc_path, mount_root)
    (root / "system.slice" / "docker-exporter.scope").mkdir(parents=True, exist_ok=True)
    reader = CgroupReader(root, tmp_path / "proc")
    container = make_container(pid=PID, network_mode="host")
    usage = reader.read(container)
    assert usage is not None, layout
    assert usage.cpu_usage_seconds == 1.0 and usage.memory_usage_bytes == 4096
    assert reader.cgroup_id(container) == host_path


def test_private_namespace_without_the_host_tree_is_not_found(tmp_path: Path) -> None:
    # The container's own cgroupfs (no host mount): a sibling's path leads outside of it.
    root = v2_tree(tmp_path, "/unrelated", f"/../docker-{CONTAINER_ID}.scope", "/")
    reader = CgroupReader(root, tmp_path / "proc")
    assert reader.read(make_container(pid=PID)) is None


def test_v1_combined_controllers_found_through_proc(tmp_path: Path) -> None:
    root = tmp_path / "sys"
    relative = f"docker/{CONTAINER_ID}"
    files = {}
    for name, text in V1_FILES.items():
        controller, file_name = name.split("/")
        mount = "cpu,cpuacct" if controller in ("cpu", "cpuacct") else controller
        files[f"sys/{mount}/{relative}/{file_name}"] = text
    mountinfo = "".join(
        f"3{i} 25 0:3{i} / {root}/{mount} rw,relatime shared:1{i} - cgroup cgroup rw,{mount}\n"
        for i, mount in enumerate(("cpu,cpuacct", "memory", "blkio"))
    )
    write_tree(
        tmp_path,
        {
            **files,
            "proc/self/mountinfo": mountinfo,
            f"proc/{PID}/cgroup": (
                f"12:memory:/{relative}\n4:cpu,cpuacct:/{relative}\n3:blkio:/{relative}\n"
                f"1:name=systemd:/{relative}\n0::/\n"
            ),
        },
    )
    for alias in ("cpu", "cpuacct"):  # as systemd and Docker hosts link them
        (root / alias).symlink_to(root / "cpu,cpuacct")
    reader = CgroupReader(root, tmp_path / "proc")
    container = make_container(pid=PID, network_mode="host")
    assert reader.read(container) is not None
    assert reader.cgroup_id(container) == f"/{relative}"


def test_nested_slice_parent_found_without_proc(tmp_path: Path) -> None:
    host_path = f"/my.slice/my-app.slice/docker-{CONTAINER_ID}.scope"
    root = v2_tree(tmp_path, host_path, "/elsewhere")
    container = make_container(pid=0, cgroup_parent="my-app.slice")
    reader = CgroupReader(root, tmp_path / "proc")
    assert reader.read(container) is not None
    assert reader.cgroup_id(container) == host_path


def test_slice_expansion_and_expected_ids(tmp_path: Path) -> None:
    assert expand_slice("a-b-c.slice") == "a.slice/a-b.slice/a-b-c.slice"
    assert expand_slice("-.slice") == ""
    assert candidate_paths("x", "")[0] == "docker/x"
    assert candidate_paths("x", "/custom")[0] == "custom/x"
    (tmp_path / "sys").mkdir()
    locator = CgroupLocator(tmp_path / "sys", tmp_path / "proc")
    assert locator.expected_id("x", "app.slice") == "/app.slice/docker-x.scope"


@pytest.mark.parametrize(
    ("driver", "parent", "expected"),
    [
        # A stopped container's id follows Docker's CgroupDriver, not the first guess.
        ("systemd", "", "/system.slice/docker-x.scope"),
        ("systemd", "app.slice", "/app.slice/docker-x.scope"),
        ("systemd", "my-app.slice", "/my.slice/my-app.slice/docker-x.scope"),
        ("cgroupfs", "", "/docker/x"),
        ("cgroupfs", "/custom", "/custom/x"),
        ("cgroupfs", "app.slice", "/app.slice/x"),
    ],
)
def test_expected_id_follows_dockers_cgroup_driver(
    tmp_path: Path, driver: str, parent: str, expected: str
) -> None:
    (tmp_path / "sys").mkdir()
    locator = CgroupLocator(tmp_path / "sys", tmp_path / "proc")
    locator.driver = driver
    assert locator.expected_id("x", parent) == expected


def test_oom_kills_are_read_on_v1_and_v2(tmp_path: Path) -> None:
    host_path = f"/docker/{CONTAINER_ID}"
    v2_root = v2_tree(tmp_path / "v2", host_path, host_path)
    (v2_root / host_path.lstrip("/") / "memory.events").write_text(
        "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n"
    )
    container = make_container(pid=PID, network_mode="host")
    usage = CgroupReader(v2_root, tmp_path / "v2" / "proc").read(container)
    assert usage is not None and usage.oom_events == 2
    v1_files = {
        **V1_FILES,
        "memory/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
    }
    write_tree(
        tmp_path / "v1",
        {
            f"sys/{name.split('/')[0]}{host_path}/{name.split('/')[1]}": text
            for name, text in v1_files.items()
        },
    )
    reader = CgroupReader(tmp_path / "v1" / "sys", tmp_path / "v1" / "proc")
    usage = reader.read(make_container(pid=0, network_mode="host"))
    assert usage is not None and usage.oom_events == 3


def test_a_stopped_rootless_container_gets_the_slice_running_ones_are_in(tmp_path: Path) -> None:
    # Rootless Docker (systemd driver): containers live in the user's systemd instance, which
    # Docker's naming alone would put in /system.slice.
    user_slice = "/user.slice/user-1000.slice/user@1000.service/user.slice"
    host_path = f"{user_slice}/docker-{CONTAINER_ID}.scope"
    root = v2_tree(tmp_path, host_path, host_path)
    reader = CgroupReader(root, tmp_path / "proc")
    reader.locator.driver = "systemd"
    stopped = make_container(pid=0, id="f" * 64, state="exited")
    assert reader.cgroup_id(stopped) == f"/system.slice/docker-{'f' * 64}.scope"  # nothing seen
    assert reader.read(make_container(pid=PID, network_mode="host")) is not None
    assert reader.cgroup_id(stopped) == f"{user_slice}/docker-{'f' * 64}.scope"
    named = make_container(pid=0, id="e" * 64, state="exited", cgroup_parent="app.slice")
    assert reader.cgroup_id(named) == f"/app.slice/docker-{'e' * 64}.scope"  # its own parent
