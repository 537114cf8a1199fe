#!/usr/bin/env bash
# Set-up for the main job on a fresh Debian 12 machine with a Rust toolchain: ezimg itself is
# pure Rust (it writes tar.gz, FAT and ISO seeds itself); `build --fetch` compiles stages with
# the host's C toolchain and the -dev packages below; `build --format iso` remasters the vendor
# installer ISO with xorriso, mtools and implantisomd5 (isomd5sum).
set -euo pipefail
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo is required (rustup)" >&2; exit 1; }
pkgs=(build-essential patch bzip2 xz-utils unzip perl libssl-dev libpopt-dev libnl-3-dev libnl-genl-3-dev
    xorriso mtools isomd5sum)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "setup: ok" >&2
