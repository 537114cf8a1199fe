#!/usr/bin/env bash
# The test command: install everything the suite needs on a fresh Debian 12 machine (apt
# packages, a Python venv with pykickstart and cloud-init's schema checker), then run it all.
# Tests that need ../shared (upstream source tarballs, the seeds) skip with a printed reason
# when it is absent; under CI=true, missing tools are failures, not skips. The VM tests
# (tests/vm_*.rs: real QEMU guests, ~65 minutes under TCG, as root) run too; EZIMG_VM_TESTS=0
# leaves them out (plain `cargo test` lists them as ignored unless EZIMG_VM_TESTS=1);
# EZIMG_VM_SLOW=1 adds the slow tier (a package compiled in a VM under TCG, ~15-25 minutes).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Command -> Debian package, for the checks the tests run on rendered outputs, the build
# stages they compile, the commit archives and signed RPMs the artifact verification tests make
# (git, rpm, gnupg), the disks layer's loop-device test (tests/disks.rs) and the VM scenario's
# operator key (ssh-keygen).
declare -A need=(
    [shellcheck]=shellcheck [keepalived]=keepalived [haproxy]=haproxy
    [systemd-analyze]=systemd [mmdebstrap]=mmdebstrap [unshare]=util-linux
    [gcc]=build-essential [make]=build-essential [patch]=patch [bzip2]=bzip2 [xz]=xz-utils
    [unzip]=unzip [zip]=zip [perl]=perl
    [git]=git [rpmbuild]=rpm [rpmsign]=rpm [rpmkeys]=rpm [rpmdb]=rpm [gpg]=gnupg
    [gpg-agent]=gpg-agent [gpgconf]=gpgconf
    [mkfs.xfs]=xfsprogs [mkfs.ext4]=e2fsprogs [losetup]=mount [lsblk]=util-linux
    [ssh-keygen]=openssh-client [strip]=binutils
)
missing=()
for cmd in "${!need[@]}"; do
    PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
for dev in libssl-dev libpopt-dev libnl-3-dev libnl-genl-3-dev; do
    dpkg-query -W -f='${Status}' "$dev" 2>/dev/null | grep -q 'install ok installed' || missing+=("$dev")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "test.sh: installing ${missing[*]}" >&2
    as_root apt-get update -qq
    # Package scripts must not start services on this machine (keepalived, haproxy).
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
    as_root chmod 755 /usr/sbin/policy-rc.d
    mapfile -t pkgs < <(printf '%s\n' "${missing[@]}" | sort -u)
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
        "${pkgs[@]}" >/dev/null
    as_root rm -f /usr/sbin/policy-rc.d
fi
bash scripts/test-deps.sh
# The VM tests run unless EZIMG_VM_TESTS=0; they also need QEMU and the image tools, and root
# (mmdebstrap, loop devices): not root, they are left out and listed as ignored, unless asked
# for (EZIMG_VM_TESTS=1 then fails, saying why).
if [ -z "${EZIMG_VM_TESTS:-}" ] && [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: the VM tests need root: leaving them out (they show as ignored)" >&2
    EZIMG_VM_TESTS=0
fi
export EZIMG_VM_TESTS=${EZIMG_VM_TESTS:-1}
if [ "$EZIMG_VM_TESTS" = 1 ]; then
    bash scripts/vm-deps.sh
fi

if [ -z "${EZIMG_FIXTURES:-}" ] && [ -d "$root/../shared/fixtures/upstream" ]; then
    EZIMG_FIXTURES=$(cd "$root/../shared/fixtures/upstream" && pwd)
    export EZIMG_FIXTURES
fi

cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test -- --test-threads=2
