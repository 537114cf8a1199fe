#!/usr/bin/env bash
# Install what `ezimg base build`, the qcow2 bake, tests/vm_*.rs and vm-tests/ need on Debian 12:
#   qemu-system-x86 (guests, TCG or KVM), qemu-utils (qemu-img), mmdebstrap (the Debian root),
#   e2fsprogs (mkfs.ext4 -d), fdisk (sfdisk), util-linux (losetup, partx, unshare),
#   dosfstools/mtools/xorriso (seed and bake disks); for vm_pxe and vm_ops: iproute2 (ip netns, bridge,
#   tap), dnsmasq-base (dnsmasq without a running service), ipxe-qemu (the NICs' iPXE ROMs;
#   qemu-system-x86 depends on it, named here because vm_pxe boots through it).
# This host may carry a backported qemu-utils (10.x) that conflicts with bookworm's
# qemu-system-x86 (7.2): qemu-utils and qemu-block-extra are then pinned to the version
# qemu-system-x86 installs at (a downgrade). Only the host's own apt sources are used.
# Idempotent: when everything is in place it only checks (well under a second).
set -euo pipefail

log() { printf 'vm-deps: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
export DEBIAN_FRONTEND=noninteractive

want=()
for p in mmdebstrap e2fsprogs fdisk util-linux dosfstools mtools xorriso iproute2 dnsmasq-base ipxe-qemu; do
    installed "$p" || want+=("$p")
done

# qemu-system-x86 and qemu-utils must come from the same QEMU release.
qemu_ok=0
if installed qemu-system-x86 && installed qemu-utils &&
    [ "$(dpkg-query -W -f='${Version}' qemu-system-x86)" = "$(dpkg-query -W -f='${Version}' qemu-utils)" ]; then
    qemu_ok=1
fi

if [ "${#want[@]}" -eq 0 ] && [ "$qemu_ok" = 1 ]; then
    log "ok: $(qemu-system-x86_64 --version | head -n1)"
    exit 0
fi

if ! apt-cache policy qemu-system-x86 | grep -q 'Candidate: [0-9]'; then
    as_root apt-get update -qq
fi
if [ "$qemu_ok" = 0 ]; then
    ver=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
    if [ -z "$ver" ] || [ "$ver" = "(none)" ]; then
        log "no qemu-system-x86 in the apt sources"
        exit 1
    fi
    log "qemu-system-x86 $ver, with qemu-utils and qemu-block-extra pinned to it"
    want+=("qemu-system-x86=$ver" "qemu-utils=$ver" "qemu-block-extra=$ver")
fi
log "installing ${want[*]}"
as_root apt-get install -y -qq --no-install-recommends --allow-downgrades "${want[@]}" >/dev/null
log "ok: $(qemu-system-x86_64 --version | head -n1)"
