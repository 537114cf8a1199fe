#!/usr/bin/env bash
# Seed: swapoff -a && sysctl -w vm.swappiness=0; sed -ri '/^[^#]*swap/s@^@#@' /etc/fstab
if ez_live; then
    # /proc/swaps has a header line, then one line per active swap (el7's swapon lacks --show).
    if [ "$(wc -l < /proc/swaps)" -gt 1 ]; then
        swapoff -a
        ez_changed "swap turned off"
    fi
    if [ "$(sysctl -n vm.swappiness)" != 0 ]; then
        sysctl -w vm.swappiness=0 >/dev/null
        ez_changed "vm.swappiness=0"
    fi
fi

# Comment out every active swap line; already commented lines do not match, so this is idempotent.
ez_sed /etc/fstab '/^[^#]*swap/s@^@#@'
