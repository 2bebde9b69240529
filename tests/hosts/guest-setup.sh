# Run in the guest's chroot at build time: boot straight into the scenario, no login.
set -eu
echo guest > /etc/hostname
printf '/dev/vda / ext4 rw 0 1\nproject /mnt/project 9p trans=virtio,version=9p2000.L,msize=262144,nofail 0 0\n' > /etc/fstab
mkdir -p /mnt/project /etc/docker
printf '9p\n9pnet_virtio\n' > /etc/modules-load.d/9p.conf
# No network device in the guest: no bridge, no iptables.
echo '{"bridge": "none", "iptables": false, "exec-opts": ["native.cgroupdriver=systemd"]}' > /etc/docker/daemon.json
cat > /etc/systemd/system/dockpulse-guest.service <<'UNIT'
[Unit]
Description=dockpulse guest scenario (from the 9p share)
After=docker.service mnt-project.mount
Requires=mnt-project.mount
[Service]
Type=oneshot
StandardOutput=journal+console
StandardError=journal+console
ExecStart=/bin/sh /mnt/project/tests/hosts/guest_run.sh
ExecStopPost=/bin/systemctl --no-block poweroff
[Install]
WantedBy=multi-user.target
UNIT
systemctl enable dockpulse-guest.service
# The busybox image the scenario imports: a rootfs of busybox-static, made here at build time.
mkdir -p /tmp/bb/bin
cp /bin/busybox /tmp/bb/bin/busybox
for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -sf busybox "/tmp/bb/bin/$applet"
done
tar -C /tmp/bb -cf /opt/busybox-rootfs.tar .
rm -rf /tmp/bb
systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer 2>/dev/null || true
passwd -d root
systemctl disable prometheus.service 2>/dev/null || true
# Rootless Docker for the user dp (uid 1000), as Docker's rootless guide sets it up: sub-ids,
# a systemd user instance from boot (linger), the cpu, cpuset and io controllers delegated to
# it besides memory and pids, the daemon's settings in the user's own config.
useradd --create-home --uid 1000 --shell /bin/sh dp
echo 'dp:100000:65536' > /etc/subuid
echo 'dp:100000:65536' > /etc/subgid
mkdir -p /var/lib/systemd/linger /etc/systemd/system/user@.service.d /home/dp/.config/docker
touch /var/lib/systemd/linger/dp
printf '[Service]\nDelegate=cpu cpuset io memory pids\n' > /etc/systemd/system/user@.service.d/delegate.conf
echo '{"bridge": "none", "iptables": false}' > /home/dp/.config/docker/daemon.json
chown -R dp:dp /home/dp/.config
