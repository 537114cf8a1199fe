#!/usr/bin/env bash
# Prints the sonames of a Debian 12 node's base install, for stages/targets/debian12.toml
# (`base = [...]`). Run on a Debian 12 (bookworm) amd64 host; the output is pasted into the
# file, which stays fixed so the stage check does not depend on the machine it runs on.
#
# The base install is what `ezimg base` builds (mmdebstrap --variant=important plus the
# packages in src/image/base/mod.rs PACKAGES): the required/important packages and that list, with
# their Depends closure. Each package's sonames are read (objdump -p) from its shared
# libraries as installed here; packages of the closure that are not installed on this host are
# listed on stderr and left out (the list errs on the side of refusing: extend it by hand).
set -euo pipefail
extra="linux-image-amd64 systemd-sysv udev dbus grub-pc cloud-init cloud-guest-utils
openssh-server ifupdown isc-dhcp-client e2fsprogs iproute2 procps kmod netbase sudo locales curl
ca-certificates"
prio=$( { apt-cache dumpavail | awk '/^Package:/{p=$2} /^Priority: (required|important)$/{print p}'
          dpkg-query -W -f '${Package} ${Priority}\n' | awk '$2=="required"||$2=="important"{print $1}'
        } | sort -u)
# shellcheck disable=SC2086 # word splitting of the package lists is wanted
closure=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances $prio $extra | grep -v '^[ <]' | sed 's/:amd64$//' | sort -u)
for p in $closure; do
    if ! dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        echo "not installed here, left out: $p" >&2
        continue
    fi
    dpkg -L "$p" | { grep -E '^/(usr/)?lib(64)?/(x86_64-linux-gnu/)?[^/]+\.so(\.[0-9.]+)?$' || true; } |
        while read -r f; do objdump -p "$f" 2>/dev/null | awk '/^  SONAME/{print $2}'; done
done | sort -u
