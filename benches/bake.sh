#!/usr/bin/env bash
# Cold vs warm qcow2 bake of one role, side by side.
#   cold: the bake cache and the role's base (the plain base + the role's packages, made by
#         mmdebstrap) are empty; the plain base stays cached (`ezimg base build` is timed
#         separately, as its own cold/warm pair), so the role base is built, then the VM boots
#         and applies the bundle;
#   warm: the same inputs again: a cache hit, no VM;
#   then a second cold bake (bake cache dropped, role base kept), and both images' sha256.
# Needs root, QEMU and the tools of scripts/vm-deps.sh. Usage:
#   benches/bake.sh [ROLE]        (default slb, on a debian12 cluster with distro nginx/keepalived)
#   benches/bake.sh --vs-virt-customize
#       the full slb role (seed 000's package toolbox included; Debian's nginx and keepalived,
#       so no artifact the offline guest lacks) baked cold by ezimg, then the same bundle
#       applied to the plain base by virt-customize (benches/virt-customize-apply.sh: the same
#       packages installed in the guest, same identity reset, same qemu-img convert -c), the
#       ratio, the warm rebuild
#       and the image size against the base. Installs libguestfs-tools (--no-install-recommends,
#       refusing if that would touch qemu-system-x86/qemu-utils) and, when the host has no
#       kernel in /boot (a container), extracts the base's own kernel package for supermin.
#       BENCH_VERIFY=0 skips the image checks (qemu-img check, files read with guestfish).
# EZIMG_CACHE_DIR is honoured (default: target/bench-cache). Timings are wall clock: on a
# shared host they move with its load.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
vs_vc=0
if [ "${1:-}" = --vs-virt-customize ]; then
    vs_vc=1
    shift
fi
role=${1:-slb}
cache=${EZIMG_CACHE_DIR:-$root/target/bench-cache}
export EZIMG_CACHE_DIR=$cache
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --release --quiet --manifest-path "$root/Cargo.toml"
# A private copy: a build in the same target dir during the run would change the binary (and
# the embedded bake.sh, hence the cache key) between the cold and the warm run.
cp "$root/target/release/ezimg" "$work/ezimg"
ezimg=$work/ezimg
"$ezimg" init --out - |
    sed -e 's/^os = "el7"/os = "debian12"/' \
        -e 's/^# \[roles.slb\]/[roles.slb]\nnginx_source = "distro"\nkeepalived_source = "distro"\n#/' \
        >"$work/cluster.toml"

# Drop the cached role bases (a base with extra packages), keeping the plain one.
drop_role_bases() {
    local m
    for m in "$cache"/base/*.json; do
        [ -e "$m" ] || continue
        if jq -e '(.extra_packages // []) | length > 0' "$m" >/dev/null; then
            rm -f "${m%.json}".*
        fi
    done
}

secs() { local t0 t1; t0=$(date +%s.%N); "$@" >"$work/log" 2>&1 || { cat "$work/log" >&2; exit 1; }; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }

if [ "$vs_vc" = 1 ]; then
    role=slb
    [ "$(id -u)" -eq 0 ] || { echo "--vs-virt-customize needs root (apt-get, libguestfs)" >&2; exit 1; }
    # libguestfs-tools (and apt-utils: virt-customize-apply.sh indexes its package repository
    # with apt-ftparchive), only if missing, and never at the cost of the pinned QEMU pair.
    if ! command -v virt-customize >/dev/null || ! command -v guestfish >/dev/null ||
        ! command -v apt-ftparchive >/dev/null; then
        sim=$(apt-get install -s --no-install-recommends libguestfs-tools apt-utils)
        if grep -E '^(Inst|Remv) qemu-(system-x86|utils|system-common|block-extra) ' <<<"$sim" >&2; then
            echo "bench: installing libguestfs-tools would change QEMU (above): not installing" >&2
            exit 1
        fi
        echo "bench: installing libguestfs-tools (--no-install-recommends): $(grep -c '^Inst' <<<"$sim") packages:" >&2
        grep '^Inst' <<<"$sim" | cut -d' ' -f2- | sed 's/^/bench:   /' >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends libguestfs-tools apt-utils >"$work/apt.log" 2>&1 ||
            { cat "$work/apt.log" >&2; exit 1; }
    fi
    export LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct}
    # Guests hang under KVM with QEMU 7.2 on the bench host: TCG unless told otherwise.
    export LIBGUESTFS_BACKEND_SETTINGS=${LIBGUESTFS_BACKEND_SETTINGS-force_tcg}
    export LIBGUESTFS_CACHEDIR=$cache/guestfs/appliance
    mkdir -p "$LIBGUESTFS_CACHEDIR"

    base_warm=$(secs "$ezimg" base build --os debian12)
    base_img=$(sed -n 's/^  image    \(.*\) (sha256.*/\1/p' "$work/log")
    [ -f "$base_img" ] || { cat "$work/log" >&2; echo "bench: no base image path in that output" >&2; exit 1; }
    rm -rf "$cache/bake"
    drop_role_bases
    cold=$(secs "$ezimg" -c "$work/cluster.toml" build --role slb --format qcow2 --out "$work/out")
    grep -E '^qcow2' "$work/log" >&2 || true
    warm=$(secs "$ezimg" -c "$work/cluster.toml" build --role slb --format qcow2 --out "$work/out")
    grep -E 'cache hit' "$work/log" >&2 || { echo "bench: the warm rebuild was no cache hit" >&2; exit 1; }
    img=$work/out/slb/ezimg-slb.qcow2
    man=$img.json

    # The same inputs for virt-customize: the bundle (rendered again: deterministic, and
    # checked against the bake's manifest), the plain base the role base was made from, the
    # node it applied and the exact package versions the role base holds.
    "$ezimg" -c "$work/cluster.toml" build --role slb --format bundle --out "$work/bundle" 2>/dev/null
    bundle=$work/bundle/slb/$(jq -r .bundle.name "$man")
    [ "$(sha256sum "$bundle" | cut -d' ' -f1)" = "$(jq -r .bundle.sha256 "$man")" ] ||
        { echo "bench: the rendered bundle is not the one the bake applied" >&2; exit 1; }
    [ "$(jq '.artifacts | length' "$man")" = 0 ] ||
        { echo "bench: the role needs artifacts; virt-customize-apply.sh does not carry them" >&2; exit 1; }
    node=$(jq -r .node_applied "$man")
    mapfile -t pkgs < <(jq -r '.packages | to_entries[] | "\(.key)=\(.value)"' "$man")

    # supermin builds the libguestfs appliance around the host's kernel; a container has none:
    # use the base's own kernel package (from the host's apt sources), unpacked in the cache.
    if ! compgen -G '/boot/vmlinuz-*' >/dev/null && [ -z "${SUPERMIN_KERNEL:-}" ]; then
        kver=$(jq -r .kernel "$cache/base/$(basename "$base_img" .qcow2).json")
        kdir=$cache/guestfs/kernel-$kver
        if [ ! -f "$kdir/lib/modules/$kver/modules.dep" ]; then
            echo "bench: no kernel in /boot: unpacking linux-image-$kver for the libguestfs appliance" >&2
            rm -rf "$kdir" && mkdir -p "$kdir/deb"
            (cd "$kdir/deb" && apt-get download -q "linux-image-$kver" >/dev/null 2>&1)
            dpkg-deb -x "$kdir"/deb/*.deb "$kdir"
            rm -rf "$kdir/deb"
            depmod -b "$kdir" "$kver"
        fi
        export SUPERMIN_KERNEL=$kdir/boot/vmlinuz-$kver SUPERMIN_MODULES=$kdir/lib/modules/$kver
        # supermin lstat()s the host's /lib/modules even when SUPERMIN_MODULES is set.
        mkdir -p /lib/modules
    fi
    # The appliance is built once and cached (like the base image on the ezimg side): not timed.
    guestfish -a /dev/null run >"$work/log" 2>&1 || { cat "$work/log" >&2; exit 1; }

    vc_img=$work/vc/ezimg-slb.qcow2
    mkdir -p "$work/vc"
    vc=$(secs "$root/benches/virt-customize-apply.sh" "$base_img" "$bundle" "$node" "$vc_img" "${pkgs[@]}")
    grep -E '^(vc:|OK)' "$work/log" >&2

    if [ "${BENCH_VERIFY:-1}" = 1 ]; then
        for t in ezimg vc; do
            i=$img
            [ "$t" = vc ] && i=$vc_img
            qemu-img check -q "$i" || { echo "bench: qemu-img check $i failed" >&2; exit 1; }
            guestfish --ro -a "$i" -i <<'EOF' >"$work/files.$t"
cat /var/lib/ezimg/applied
sh "dpkg-query -W nginx libnginx-mod-stream keepalived"
sh "sha256sum /etc/sysctl.d/user.conf /etc/sysctl.d/swap.conf /ezops/service/nginx/conf/nginx.conf /etc/systemd/system/keepalived.service"
sh "echo machine-id bytes $(wc -c </etc/machine-id) ssh host keys $(ls /etc/ssh | grep -c host_key) hostname $(cat /etc/hostname) keepalived.conf $(ls /ezops/service/keepalived/etc/keepalived/keepalived.conf 2>/dev/null | wc -l)"
EOF
        done
        if diff -u "$work/files.ezimg" "$work/files.vc" >&2; then
            echo "bench: both images: qemu-img check clean; same apply state, packages, files and reset identity:" >&2
            sed 's/^/bench:   /' "$work/files.vc" >&2
        else
            echo "bench: the two images differ (above)" >&2
            exit 1
        fi
    fi

    mib() { echo "scale=1; $(stat -c %s "$1") / 1048576" | bc; }
    printf '%-32s %10s\n' "" "seconds"
    printf '%-32s %9.1fs\n' "ezimg bake slb (cold, $(jq -r .accel "$man"))" "$cold"
    printf '%-32s %9.1fs\n' "virt-customize same bundle" "$vc"
    printf '%-32s %9.2fx\n' "ratio ezimg / virt-customize" "$(echo "$cold / $vc" | bc -l)"
    printf '%-32s %9.2fs\n' "ezimg warm rebuild (cache hit)" "$warm"
    printf '%-32s %9.2fs\n' "ezimg base debian12 (warm)" "$base_warm"
    printf '%-32s %10s\n' "" "MiB"
    printf '%-32s %10s\n' "image size (ezimg)" "$(mib "$img")"
    printf '%-32s %10s\n' "image size (virt-customize)" "$(mib "$vc_img")"
    printf '%-32s %10s\n' "base size" "$(mib "$base_img")"
    exit
fi

# The base: cold only when it is not cached yet (BENCH_BASE_COLD=1 forces a rebuild).
if [ "${BENCH_BASE_COLD:-0}" = 1 ]; then
    base_cold=$(secs "$ezimg" base build --os debian12 --rebuild)
else
    base_cold="cached"
fi
base_warm=$(secs "$ezimg" base build --os debian12)
rm -rf "$cache/bake"
drop_role_bases
cold=$(secs "$ezimg" -c "$work/cluster.toml" build --role "$role" --format qcow2 --out "$work/out")
grep -E '^qcow2' "$work/log" >&2 || true
warm=$(secs "$ezimg" -c "$work/cluster.toml" build --role "$role" --format qcow2 --out "$work/out")
size=$(du -m "$work/out/$role/ezimg-$role.qcow2" | cut -f1)
sha1=$(sha256sum "$work/out/$role/ezimg-$role.qcow2" | cut -d' ' -f1)
# A second cold bake of the same inputs (the bake cache dropped, the role base kept): the image
# must be the same bytes.
rm -rf "$cache/bake"
cold2=$(secs "$ezimg" -c "$work/cluster.toml" build --role "$role" --format qcow2 --out "$work/out2")
sha2=$(sha256sum "$work/out2/$role/ezimg-$role.qcow2" | cut -d' ' -f1)
printf '%-28s %10s %10s\n' "" cold warm
printf '%-28s %9.1fs %9.2fs\n' "bake $role (qcow2, ${size} MiB)" "$cold" "$warm"
printf '%-28s %9.1fs\n' "bake $role again (cold)" "$cold2"
printf '%-28s %10s %9.2fs\n' "base debian12" "$base_cold" "$base_warm"
echo "two cold bakes: sha256 $sha1"
echo "                sha256 $sha2"
if [ "$sha1" = "$sha2" ]; then echo "                identical"; else echo "                DIFFER" >&2; exit 1; fi
