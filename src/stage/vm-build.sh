#!/bin/bash
# ezimg stage build: runs once inside the VM builder (the target's base image, booted with no
# network, only the stage's build dependencies installed), from the read-only build disk mounted
# at $1. Unpacks the prepared sources (already patched and edited on the host) at the work
# directory's fixed path, runs each configure/build/install step with a cleaned environment
# (one log per step), writes staging/ and logs/ as a tar archive straight onto the raw output
# disk, reports `OK` or `FAIL STEP <name>` / `FAIL <why>` + `END` on the virtio-serial port
# ezimg.0, and powers off. The host packs and checks the output; it never guesses.
set -uo pipefail

d=${1:?build disk mount point}
port=/dev/virtio-ports/ezimg.0
out=/dev/disk/by-id/virtio-ezout

say() { printf '%s\n' "$*" >"$port"; }
off() {
    sync
    systemctl poweroff --no-block || poweroff -f
    exit 0
}
# Hand back what there is (the logs explain a failure), then the verdict.
finish() {
    if ! tar -c -f "$out" -C "$W" staging logs; then
        say "FAIL writing the output disk $out"
        say END
        off
    fi
    sync
    say "$1"
    say END
    off
}

# stage.env sets W (the work directory) and source_date_epoch.
# shellcheck source=/dev/null
. "$d/stage.env" || { say "FAIL reading stage.env"; say END; off; }
if [ -z "${W:-}" ] || [ -z "${source_date_epoch:-}" ]; then
    say "FAIL stage.env lacks W or source_date_epoch"
    say END
    off
fi
say "BUILD started $(uname -r), $(nproc) CPUs"
mkdir -p "$W/staging" "$W/logs" "$W/tmp" "$W/home" || finish "FAIL creating $W"
# A vendor image gets its build dependencies from the disk (no network, every repository off);
# ezimg's own base has them installed already.
if compgen -G "$d/deps/*.rpm" >/dev/null; then
    say "STEP dependencies"
    if command -v dnf >/dev/null; then
        dnf -y --disablerepo='*' install "$d"/deps/*.rpm >>"$W/logs/deps.log" 2>&1 ||
            finish "FAIL installing the build dependencies"
    else
        yum -y --disablerepo='*' localinstall "$d"/deps/*.rpm >>"$W/logs/deps.log" 2>&1 ||
            finish "FAIL installing the build dependencies"
    fi
fi
tar -x -f "$d/src.tar" -C "$W" || finish "FAIL unpacking the sources"

# step SLUG NAME CWD ARGV...: one command of a step, run like the host builder runs it.
step() {
    local slug=$1 name=$2 cwd=$3
    shift 3
    say "STEP $name"
    (cd "$W/$cwd" && exec env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
        HOME="$W/home" TMPDIR="$W/tmp" LC_ALL=C LANG=C TZ=UTC \
        SOURCE_DATE_EPOCH="$source_date_epoch" "$@") </dev/null >>"$W/logs/$slug.log" 2>&1 ||
        finish "FAIL STEP $name"
}

# shellcheck source=/dev/null
. "$d/steps.sh"
finish OK
