#!/bin/bash
# ezimg bake: runs once inside the bake VM (from the base's bake entry point, or a vendor
# image's cloud-init runcmd), from the read-only bake disk mounted at $1. Applies the role
# bundle for one node, resets machine identity and reports `OK ...` or `FAIL <why>` + log and
# journal tails + `END` on the virtio-serial port ezimg.0, then powers off. The host never
# guesses: no OK line, no image.
set -uo pipefail

d=${1:?bake disk mount point}
port=/dev/virtio-ports/ezimg.0
log=/var/log/ezimg-bake.log

say() { printf '%s\n' "$*" >"$port"; }
fail() {
    # The apply's stderr reaches $log through a process substitution nobody waits for.
    sleep 1
    {
        printf 'FAIL %s\n' "$*"
        echo "--- last lines of $log ---"
        tail -n 40 "$log" 2>/dev/null
        echo "--- journal tail ---"
        journalctl -b --no-pager -n 30 -o short-monotonic 2>/dev/null
        echo END
    } >"$port"
    sync
    systemctl poweroff --no-block || poweroff -f
    exit 1
}

say "BAKE started $(uname -r)"
exec >>"$log" 2>&1
# bake.env sets node, bundle_file and bundle_sha.
# shellcheck source=/dev/null
. "$d/bake.env" || fail "reading bake.env"
if [ -z "${node:-}" ] || [ -z "${bundle_file:-}" ] || [ -z "${bundle_sha:-}" ] || [ -z "${source_date_epoch:-}" ]; then
    fail "bake.env lacks node, bundle_file, bundle_sha or source_date_epoch"
fi
# Tools that stamp the time into files (useradd's last password change, ...) take this one.
export SOURCE_DATE_EPOCH=$source_date_epoch

mkdir -p /var/lib/ezimg /opt/ezimg /etc/ezimg /var/cache/ezimg/artifacts
cp "$d/$bundle_file" "/var/lib/ezimg/$bundle_file" || fail "copying the bundle"
if [ "$(sha256sum "/var/lib/ezimg/$bundle_file" | cut -d' ' -f1)" != "$bundle_sha" ]; then
    fail "the bundle on the bake disk does not match sha256 $bundle_sha"
fi
# Artifacts stay where ez_artifact looks when no --artifacts is given: a re-apply at first
# boot finds them without a server.
if compgen -G "$d/artifacts/*" >/dev/null; then
    cp "$d"/artifacts/* /var/cache/ezimg/artifacts/ || fail "copying artifacts"
fi

# No network: the base holds the packages the layers install (`ez_pkg_install` finds them
# installed). apt points at the bake disk's empty repository, so a layer's `apt-get update` /
# `upgrade` (base-packages does one) works offline and finds nothing newer than the base; a
# package the base lacks fails the bake, naming it.
apt_dir=/run/ezimg-bake-apt
mkdir -p "$apt_dir/parts"
echo "deb [trusted=yes] file:$d/debs ./" >"$apt_dir/sources.list"
printf 'Dir::Etc::SourceList "%s";\nDir::Etc::SourceParts "%s";\nAcquire::Languages "none";\n' \
    "$apt_dir/sources.list" "$apt_dir/parts" >"$apt_dir/apt.conf"
export APT_CONFIG=$apt_dir/apt.conf

dir=/opt/ezimg/bundle-$bundle_sha
if [ ! -d "$dir" ]; then
    tmp=$(mktemp -d /opt/ezimg/.unpack.XXXXXX)
    tar -xzf "/var/lib/ezimg/$bundle_file" -C "$tmp" --no-same-owner || fail "unpacking the bundle"
    mv "$tmp" "$dir"
fi
ln -sfn "$dir" /opt/ezimg/current

# A role image holds no secret: files that take one are applied with a placeholder (so the
# layer runs as on a node), then removed below; the node's first boot, with its seed's real
# secrets, installs them again.
secret_files=()
made_secrets=()
# The steps as apply itself reads them (one reader of the format; fields tab-separated).
steps=$("$dir/apply" --node "$node" --list-steps) || fail "reading the steps of node $node"
# shellcheck source=../bundle/lib.sh
. "$dir/lib/ezimg.sh"
while read -r kind _mode sha dest; do
    [ "$kind" = file ] || continue
    names=$(ez_secret_names "$dir/blobs/$sha")
    [ -n "$names" ] || continue
    secret_files+=("$dest")
    for n in $names; do
        if [ ! -e "/etc/ezimg/secrets/$n" ]; then
            mkdir -p /etc/ezimg/secrets
            printf 'bakeonly\n' >"/etc/ezimg/secrets/$n"
            made_secrets+=("$n")
        fi
    done
done <<<"$steps"

# Packages do not start their services in an image root either (as mmdebstrap does it).
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d

# An image root, not a node: layers install and enable, but start nothing and touch no kernel
# state (`ez_live` false, as in a kickstart %post). A service here would run with the bake's
# placeholders and without the node's NIC (keepalived dies without its interface); the node's
# first boot runs the same apply live, with its own seed.
export EZIMG_LIVE=0
# A root for every node of the role, with none of their disks: the disks layer leaves them to the
# node's first boot.
export EZIMG_IMAGE_BAKE=1
say "STEP apply --node $node"
# Each layer's start goes to the host too: progress, and where the minutes go.
first=$("$dir/apply" --node "$node" 2> >(tee -a "$log" | grep --line-buffered -o 'ezimg\[[^]]*\]: layer .*' | sed -u 's/^ezimg\[[^]]*\]: /STEP /' >"$port") | tail -n1) ||
    fail "apply --node $node failed"
say "STEP apply again (must change nothing): $first"
second_log=$(mktemp)
second=$("$dir/apply" --node "$node" 2>&1 | tee "$second_log" | tail -n1) || fail "second apply --node $node failed"
cat "$second_log"
if [ "$second" != "ezimg apply: 0 changes" ]; then
    # The host records the count in the manifest; say what changed so it can be fixed.
    grep 'changed: ' "$second_log" | sed 's/^/CHANGED /' >"$port"
fi
rm -f "$second_log"

rm -f /usr/sbin/policy-rc.d

for f in "${secret_files[@]}"; do rm -f "$f"; done
for n in "${made_secrets[@]}"; do rm -f "/etc/ezimg/secrets/$n"; done
rmdir /etc/ezimg/secrets 2>/dev/null || true

# Reset machine identity: every node booted from the image makes its own.
say "STEP resetting machine identity: $second"
if command -v apt-get >/dev/null; then apt-get clean; fi
unset APT_CONFIG
rm -rf /var/lib/apt/lists/* "$apt_dir"
truncate -s 0 /etc/machine-id
rm -f /var/lib/dbus/machine-id /etc/ssh/ssh_host_*
# State a boot leaves that differs from bake to bake (random bytes, inode numbers and times).
rm -f /var/lib/systemd/random-seed /var/lib/systemd/credential.secret /var/cache/ldconfig/aux-cache
rm -rf /var/lib/systemd/timers /var/lib/systemd/timesync /var/lib/dhcp/*.leases /var/tmp/* /tmp/*
echo localhost >/etc/hostname
cloud-init clean --logs --seed || fail "cloud-init clean"
journalctl --rotate >/dev/null 2>&1
journalctl --vacuum-time=1s >/dev/null 2>&1
rm -rf /var/log/journal/*/*
find /var/log -type f \( -name '*.gz' -o -name '*.[0-9]' \) -delete
find /var/log -type f -exec truncate -s 0 {} +
rm -f /root/.bash_history
fstrim -a >/dev/null 2>&1 || true
sync
say "OK first=\"${first}\" second=\"${second}\" secret_files_removed=${#secret_files[@]}"
systemctl poweroff --no-block || poweroff -f
