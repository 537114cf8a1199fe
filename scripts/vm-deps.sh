#!/usr/bin/env bash
# Install what `ezimg base build`, the qcow2 bake, tests/vm_*.rs and vm-tests/ need on Debian 12:
#   qemu-system-x86 (TCG or KVM guests), qemu-utils (qemu-img), mmdebstrap (the Debian root),
#   e2fsprogs (mkfs.ext4 -d), fdisk (sfdisk), dosfstools/mtools/xorriso (seed and data disks),
#   apt-utils (apt-ftparchive: the bake's offline package repo), dpkg-dev.
# The host may carry a backported qemu-utils (10.x) that conflicts with bookworm's
# qemu-system-x86 (7.2): qemu-utils and qemu-block-extra are then pinned to the version
# qemu-system-x86 will be installed at (a downgrade). Only the host's own apt sources are used.
# Idempotent: when everything is there it only checks.
set -euo pipefail

log() { printf 'vm-deps: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
export DEBIAN_FRONTEND=noninteractive

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

pkgs=(mmdebstrap e2fsprogs fdisk dosfstools mtools xorriso apt-utils dpkg-dev util-linux)
missing=()
for p in "${pkgs[@]}"; do installed "$p" || missing+=("$p"); done

qemu_ok=1
installed qemu-system-x86 || qemu_ok=0
if [ "$qemu_ok" = 1 ]; then
    sys=$(dpkg-query -W -f='${Version}' qemu-system-x86)
    utils=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
    [ "$sys" = "$utils" ] || qemu_ok=0
fi

if [ "${#missing[@]}" -eq 0 ] && [ "$qemu_ok" = 1 ]; then
    log "ok: $(qemu-system-x86_64 --version | head -n1), qemu-img $(dpkg-query -W -f='${Version}' qemu-utils)"
    exit 0
fi

if ! apt-cache policy qemu-system-x86 | grep -q 'Candidate: [0-9]'; then
    as_root apt-get update -qq
fi
if [ "$qemu_ok" = 0 ]; then
    ver=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
    [ -n "$ver" ] && [ "$ver" != "(none)" ] || { log "no qemu-system-x86 candidate in the apt sources"; exit 1; }
    log "installing qemu-system-x86 $ver (qemu-utils and qemu-block-extra pinned to it)"
    missing+=(qemu-system-x86 "qemu-system-x86=$ver" "qemu-utils=$ver" "qemu-block-extra=$ver")
    # qemu-system-x86 without "=ver" is listed once only; drop the bare name.
    missing=("${missing[@]/#qemu-system-x86/qemu-system-x86}")
fi
# Remove duplicates (a bare name next to name=version).
declare -A seen=()
final=()
for p in "${missing[@]}"; do
    [ -n "${seen[$p]:-}" ] && continue
    seen[$p]=1
    case "$p" in qemu-system-x86) [ "$qemu_ok" = 0 ] && continue ;; esac
    final+=("$p")
done
log "installing ${final[*]}"
as_root apt-get install -y -qq --no-install-recommends --allow-downgrades "${final[@]}" >/dev/null
log "ok: $(qemu-system-x86_64 --version | head -n1)"
