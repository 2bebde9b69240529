#!/bin/sh
# The guest's payload (dockpulse-guest.service): runs the scenario, results to the 9p share.
out=/mnt/project/.guest-results
mkdir -p "$out"
awk '{print $1}' /proc/uptime > "$out/boot_seconds"
/opt/dockpulse/bin/python /mnt/project/tests/hosts/guest_scenario.py "$out" > "$out/scenario.log" 2>&1
echo "scenario exit $?" >> "$out/scenario.log"
sync
