#!/usr/bin/env bash
# Builds the Debian bookworm guest (cgroup v2, systemd, Docker) into $1: rootfs.img (ext4),
# vmlinuz, initrd.img. $2 is a folder of wheels that install the exporter offline.
set -euo pipefail
out=$1
wheels=$2
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "$out.work.XXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mmdebstrap --variant=apt --quiet \
    --include="$(paste -sd, "$here/guest-packages.txt")" \
    --customize-hook="mkdir -p \"\$1/opt/wheels\" && cp $wheels/*.whl \"\$1/opt/wheels/\"" \
    --customize-hook='chroot "$1" python3 -m venv /opt/dockpulse' \
    --customize-hook='chroot "$1" /opt/dockpulse/bin/pip install -q --no-index --find-links /opt/wheels "dockpulse[exporter]"' \
    --customize-hook='rm -rf "$1/opt/wheels"' \
    --customize-hook="cp $here/guest-setup.sh \"\$1/tmp/\" && chroot \"\$1\" sh /tmp/guest-setup.sh && rm \"\$1/tmp/guest-setup.sh\"" \
    bookworm "$root"
cp -L "$root"/boot/vmlinuz-* "$work/vmlinuz"
cp -L "$root"/boot/initrd.img-* "$work/initrd.img"
size_mb=$(( $(du -sm "$root" | cut -f1) + 1536 ))
mke2fs -q -t ext4 -L guestroot -d "$root" "$work/rootfs.img" "${size_mb}M"
mv "$work/vmlinuz" "$work/initrd.img" "$work/rootfs.img" "$out/"
