"""Container images built from Debian packages, for machines that cannot pull from a registry.

- `busybox_image`: `busybox-static` in an otherwise empty rootfs (small test containers).
- `debian_image`: a bookworm rootfs made by `mmdebstrap` with the packages asked for.
Both are imported with `docker import` and reused when the tag already exists.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from contextlib import closing
from pathlib import Path

import docker

from dockpulse_stack.engine import Engine
from dockpulse_stack.errors import StackError
from dockpulse_stack.host_packages import ensure_debian_packages

BUSYBOX_TAG = "dockpulse/busybox:local"
PYTHON_BASE_TAG = "dockpulse/python-base:bookworm"
PYTHON_BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates", "curl")
DEBIAN_IMAGE_TOOLS = {"mmdebstrap": "mmdebstrap"}


def image_exists(engine: Engine, tag: str) -> bool:
    with closing(engine.client()) as client:
        try:
            client.images.get(tag)
        except docker.errors.ImageNotFound:
            return False
    return True


def _import_rootfs_tar(engine: Engine, tar_stream: subprocess.Popen[bytes], tag: str) -> None:
    """Feed a tar stream of a rootfs into `docker import`."""
    result = subprocess.run(
        ["docker", "import", "-", tag],
        stdin=tar_stream.stdout,
        env=engine.env(),
        capture_output=True,
        text=True,
    )
    tar_stream.wait()
    if tar_stream.returncode != 0 or result.returncode != 0:
        raise StackError(f"building image {tag} failed: {result.stderr.strip()}")


def busybox_image(engine: Engine, tag: str = BUSYBOX_TAG) -> str:
    """A busybox image from the host's `busybox-static`; returns its tag."""
    if image_exists(engine, tag):
        return tag
    ensure_debian_packages({"busybox": "busybox-static"})
    busybox = shutil.which("busybox")
    assert busybox is not None  # ensure_debian_packages raised otherwise
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for folder in ("bin", "etc", "tmp", "proc", "sys", "dev", "data"):
            (root / folder).mkdir()
        (root / "tmp").chmod(0o1777)
        shutil.copy2(busybox, root / "bin" / "busybox")
        applets = subprocess.run(
            [busybox, "--list"], capture_output=True, text=True, check=True
        ).stdout.split()
        for applet in applets:
            if applet != "busybox":
                (root / "bin" / applet).symlink_to("busybox")
        (root / "etc" / "passwd").write_text(
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
        )
        (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        _import_rootfs_tar(engine, tar, tag)
    return tag


def debian_image(engine: Engine, tag: str, packages: tuple[str, ...]) -> str:
    """A Debian bookworm image with `packages`, made by mmdebstrap (about 25 s); returns its tag."""
    if image_exists(engine, tag):
        return tag
    ensure_debian_packages(DEBIAN_IMAGE_TOOLS)
    print(f"dockpulse: building {tag} from Debian packages (mmdebstrap)...", file=sys.stderr)
    tar = subprocess.Popen(
        [
            "mmdebstrap",
            "--variant=apt",
            "--quiet",
            f"--include={','.join(packages)}",
            "bookworm",
            "-",
        ],
        stdout=subprocess.PIPE,
    )
    _import_rootfs_tar(engine, tar, tag)
    return tag


def python_base_image(engine: Engine, tag: str = PYTHON_BASE_TAG) -> str:
    """The Debian Python base image the project's Dockerfiles build on here."""
    return debian_image(engine, tag, PYTHON_BASE_PACKAGES)
