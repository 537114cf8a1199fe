#!/usr/bin/env bash
# The bake of src/image/bake.sh, done with virt-customize instead of booting the image: the
# baseline benches/bake.sh compares `ezimg build --format qcow2` against.
#   virt-customize-apply.sh BASE.qcow2 BUNDLE.tar.gz NODE OUT.qcow2 [PKG=VERSION...]
# Same work as the ezimg bake, on a qcow2 overlay of BASE (BASE stays untouched):
#   - the PKG=VERSION list (the `packages` of the ezimg bake's manifest) is downloaded against
#     BASE's dpkg status (BASE with .dpkg-status for .qcow2, as `ezimg base build` leaves it)
#     and indexed as a flat repository, like package_repo in src/image/bake.rs;
#   - like ezimg's bake disk, an ISO (xorriso, volume EZBAKE) holds the bundle, bake.env, the
#     repository and the guest script below; `virt-customize --no-network --attach` gives it
#     to the appliance and one --run-command mounts it and runs the script, which does what
#     bake.sh does: bundle to /var/lib/ezimg, unpack into /opt/ezimg/bundle-<sha>, offline apt
#     from the ISO, placeholder secrets, `apply --node NODE` twice with EZIMG_LIVE=0 (not a
#     booted system), removal of the files that hold secret placeholders, identity reset
#     (machine-id, ssh host keys, hostname, cloud-init clean, logs);
#   - qemu-img convert -O qcow2 -c, as ezimg does. VC_SPARSIFY=1 runs virt-sparsify
#     --in-place first (ezimg's bake ends with fstrim; nothing is copied into this disk, so
#     it is off by default).
# The apply verdict (`OK first=... second=...`) is printed on stdout; a failure exits non-zero.
# Timings of each step go to stderr as `vc: <step> <seconds>`.
# libguestfs runs with LIBGUESTFS_BACKEND=direct and, unless LIBGUESTFS_BACKEND_SETTINGS is set,
# force_tcg (guests hang under KVM with QEMU 7.2 on the bench host).
set -euo pipefail

if [ "$#" -lt 4 ]; then
    sed -n '2,4p' "$0" >&2
    exit 2
fi
base=$(realpath "$1")
bundle=$(realpath "$2")
node=$3
out=$4
shift 4
pkgs=("$@")
export LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct}
export LIBGUESTFS_BACKEND_SETTINGS=${LIBGUESTFS_BACKEND_SETTINGS-force_tcg}
status=${base%.qcow2}.dpkg-status
[ -f "$status" ] || { echo "no dpkg status next to the base: $status" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/var/tmp}/ezvc.XXXXXX")
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }
lap() { printf 'vc: %-10s %6.1f\n' "$1" "$(echo "$(now) - $2" | bc)" >&2; }

# The bake disk tree (what ezimg puts on its own bake disk, plus the guest script).
stage=$work/ezbake
mkdir -p "$stage/debs/partial"
bundle_file=$(basename "$bundle")
cp "$bundle" "$stage/$bundle_file"
bundle_sha=$(sha256sum "$bundle" | cut -d' ' -f1)
printf 'node=%q\nbundle_file=%q\nbundle_sha=%s\n' "$node" "$bundle_file" "$bundle_sha" >"$stage/bake.env"

t0=$(now)
if [ "${#pkgs[@]}" -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get -q -y --no-install-recommends --download-only \
        -oDir::State::status="$status" -oDir::Cache::archives="$stage/debs" \
        -oDebug::NoLocking=1 -oAPT::Sandbox::User=root install "${pkgs[@]}" >"$work/apt.log" 2>&1 ||
        { cat "$work/apt.log" >&2; exit 1; }
fi
rm -rf "$stage/debs/partial" "$stage/debs/lock"
(cd "$stage/debs" && apt-ftparchive packages . >Packages && apt-ftparchive release . >Release)

cat >"$stage/guest.sh" <<'GUEST'
#!/bin/bash
# Runs in the guest's root under virt-customize (a chroot in the libguestfs appliance), from
# the read-only bake disk mounted at $1.
set -uo pipefail
d=${1:?bake disk mount point}
log=/var/log/ezimg-bake.log
exec 3>&1 >>"$log" 2>&1
fail() { echo "FAIL $*" >&3; tail -n 40 "$log" >&3; exit 1; }
# shellcheck source=/dev/null
. "$d/bake.env" || fail "reading bake.env"

mkdir -p /var/lib/ezimg /opt/ezimg /etc/ezimg /var/cache/ezimg/artifacts
cp "$d/$bundle_file" "/var/lib/ezimg/$bundle_file" || fail "copying the bundle"
[ "$(sha256sum "/var/lib/ezimg/$bundle_file" | cut -d' ' -f1)" = "$bundle_sha" ] || fail "bundle sha256"
if compgen -G "$d/artifacts/*" >/dev/null; then
    cp "$d"/artifacts/* /var/cache/ezimg/artifacts/ || fail "copying artifacts"
fi

apt_dir=/run/ezimg-bake-apt
mkdir -p "$apt_dir/parts"
echo "deb [trusted=yes] file:$d/debs ./" >"$apt_dir/sources.list"
printf 'Dir::Etc::SourceList "%s";\nDir::Etc::SourceParts "%s";\nAcquire::Languages "none";\n' \
    "$apt_dir/sources.list" "$apt_dir/parts" >"$apt_dir/apt.conf"
export APT_CONFIG=$apt_dir/apt.conf
apt-get update || fail "apt-get update from the copied-in repository"
# Not a booted system: package scripts must not start services (the usual chroot guard).
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod 755 /usr/sbin/policy-rc.d

dir=/opt/ezimg/bundle-$bundle_sha
if [ ! -d "$dir" ]; then
    tmp=$(mktemp -d /opt/ezimg/.unpack.XXXXXX)
    tar -xzf "/var/lib/ezimg/$bundle_file" -C "$tmp" --no-same-owner || fail "unpacking the bundle"
    mv "$tmp" "$dir"
fi
ln -sfn "$dir" /opt/ezimg/current

secret_files=()
made_secrets=()
while read -r kind _mode sha dest; do
    [ "$kind" = file ] || continue
    grep -q '@@EZIMG_SECRET_' "$dir/blobs/$sha" || continue
    secret_files+=("$dest")
    # shellcheck disable=SC2013 # names are single words ([a-z0-9_])
    for n in $(grep -o '@@EZIMG_SECRET_[a-z0-9_]*@@' "$dir/blobs/$sha" | sed 's/^@@EZIMG_SECRET_//; s/@@$//' | sort -u); do
        if [ ! -e "/etc/ezimg/secrets/$n" ]; then
            mkdir -p /etc/ezimg/secrets
            printf 'bakeonly\n' >"/etc/ezimg/secrets/$n"
            made_secrets+=("$n")
        fi
    done
done <"$dir/nodes/$node/steps"

export EZIMG_LIVE=0
first=$("$dir/apply" --node "$node" | tail -n1) || fail "apply --node $node failed"
second=$("$dir/apply" --node "$node" | tail -n1) || fail "second apply --node $node failed"

for f in "${secret_files[@]}"; do rm -f "$f"; done
for n in "${made_secrets[@]}"; do rm -f "/etc/ezimg/secrets/$n"; done
rmdir /etc/ezimg/secrets 2>/dev/null || true

# Identity reset, as bake.sh (journalctl --rotate/--vacuum need a running journald: the
# files are removed instead).
rm -f /usr/sbin/policy-rc.d
apt-get clean
unset APT_CONFIG
rm -rf /var/lib/apt/lists/* "$apt_dir"
truncate -s 0 /etc/machine-id
rm -f /var/lib/dbus/machine-id /etc/ssh/ssh_host_*
echo localhost >/etc/hostname
cloud-init clean --logs --seed || fail "cloud-init clean"
rm -rf /var/log/journal/*/*
find /var/log -type f \( -name '*.gz' -o -name '*.[0-9]' \) -delete
find /var/log -type f -exec truncate -s 0 {} +
rm -f /root/.bash_history
echo "OK first=\"${first}\" second=\"${second}\" secret_files_removed=${#secret_files[@]}" >&3
GUEST

xorriso -as mkisofs -quiet -R -V EZBAKE -o "$work/bake.iso" "$stage" 2>"$work/xorriso.log" ||
    { cat "$work/xorriso.log" >&2; exit 1; }
lap "repo+iso" "$t0"

t=$(now)
qemu-img create -q -f qcow2 -F qcow2 -b "$base" "$work/disk.qcow2"
# -v: virt-customize shows the output of run-command (its builder.log) only when verbose; the
# log goes to a file. --no-logfile: the image keeps no builder.log (ezimg empties /var/log).
# shellcheck disable=SC2016 # the run-command is expanded in the guest
virt-customize -v --format qcow2 -a "$work/disk.qcow2" --no-network \
    --attach "$work/bake.iso" --no-logfile \
    --run-command 'mkdir -p /run/ezbake && mount -o ro LABEL=EZBAKE /run/ezbake && { bash /run/ezbake/guest.sh /run/ezbake; rc=$?; umount /run/ezbake; rmdir /run/ezbake; exit $rc; }' \
    >"$work/customize.log" 2>&1 || { grep -v '^libguestfs: trace' "$work/customize.log" | tail -n 60 >&2; exit 1; }
lap customize "$t"
grep -ho 'OK first=.*' "$work/customize.log" || { echo "no OK verdict in the virt-customize log" >&2; exit 1; }

if [ "${VC_SPARSIFY:-0}" = 1 ]; then
    t=$(now)
    virt-sparsify -q --in-place "$work/disk.qcow2" >"$work/sparsify.log" 2>&1 ||
        { cat "$work/sparsify.log" >&2; exit 1; }
    lap sparsify "$t"
fi

t=$(now)
qemu-img convert -f qcow2 -O qcow2 -c "$work/disk.qcow2" "$out"
lap convert "$t"
