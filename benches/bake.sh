#!/usr/bin/env bash
# Cold vs warm qcow2 bake of one role, side by side.
#   cold: the bake cache is empty (the base image stays cached: `ezimg base build` is timed
#         separately, as its own cold/warm pair), so the VM boots and applies the bundle;
#   warm: the same inputs again: a cache hit, no VM.
# Needs root, QEMU and the tools of scripts/vm-deps.sh. Usage:
#   benches/bake.sh [ROLE]        (default slb, on a debian12 cluster with distro nginx/keepalived)
# EZIMG_CACHE_DIR is honoured (default: target/bench-cache).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
role=${1:-slb}
cache=${EZIMG_CACHE_DIR:-$root/target/bench-cache}
export EZIMG_CACHE_DIR=$cache
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --release --quiet --manifest-path "$root/Cargo.toml"
ezimg=$root/target/release/ezimg
"$ezimg" init --out - |
    sed -e 's/^os = "el7"/os = "debian12"/' \
        -e 's/^# \[roles.slb\]/[roles.slb]\nnginx_source = "distro"\nkeepalived_source = "distro"\n#/' \
        >"$work/cluster.toml"

secs() { local t0 t1; t0=$(date +%s.%N); "$@" >"$work/log" 2>&1 || { cat "$work/log" >&2; exit 1; }; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }

# The base: cold only when it is not cached yet (BENCH_BASE_COLD=1 forces a rebuild).
if [ "${BENCH_BASE_COLD:-0}" = 1 ]; then
    base_cold=$(secs "$ezimg" base build --os debian12 --rebuild)
else
    base_cold="cached"
fi
base_warm=$(secs "$ezimg" base build --os debian12)
rm -rf "$cache/bake"
cold=$(secs "$ezimg" -c "$work/cluster.toml" build --role "$role" --format qcow2 --out "$work/out")
grep -E '^qcow2' "$work/log" >&2 || true
warm=$(secs "$ezimg" -c "$work/cluster.toml" build --role "$role" --format qcow2 --out "$work/out")
size=$(du -m "$work/out/$role/ezimg-$role.qcow2" | cut -f1)
printf '%-28s %10s %10s\n' "" cold warm
printf '%-28s %9.1fs %9.2fs\n' "bake $role (qcow2, ${size} MiB)" "$cold" "$warm"
printf '%-28s %10s %9.2fs\n' "base debian12" "$base_cold" "$base_warm"
