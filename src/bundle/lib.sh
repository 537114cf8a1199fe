# shellcheck shell=bash
# ezimg step library: sourced by `apply` before each layer script. Bash 4.2 (CentOS 7) compatible.
# Every helper is idempotent and reports what it changed through ez_changed.

ez_log() { printf 'ezimg[%s]: %s\n' "${EZ_LAYER:-apply}" "$*" >&2; }
ez_die() { ez_log "error: $*"; exit 1; }

# Record one change; apply counts them (a second apply must count none).
ez_changed() {
    printf '%s: %s\n' "${EZ_LAYER:-apply}" "$*" >>"${EZ_CHANGES_FILE:-/dev/null}"
    ez_log "changed: $*"
}

# True on a booted system: systemd is PID 1 and / is its root. False in a chroot, a kickstart
# %post or an image bake root, where services cannot be started. EZIMG_LIVE=0|1 overrides.
ez_live() {
    case "${EZIMG_LIVE:-}" in 1) return 0 ;; 0) return 1 ;; esac
    [ -d /run/systemd/system ] || return 1
    [ "$(stat -Lc %d:%i / 2>/dev/null)" = "$(stat -Lc %d:%i /proc/1/root/. 2>/dev/null)" ]
}

ez_pkg_installed() {
    case "$EZ_OS" in
        el7 | el9) rpm -q --whatprovides "$1" >/dev/null 2>&1 ;;
        debian12) dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed' ;;
        *) ez_die "unknown EZ_OS '$EZ_OS'" ;;
    esac
}

ez_pkg_install() {
    local missing=() p
    for p in "$@"; do
        ez_pkg_installed "$p" || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    case "$EZ_OS" in
        el7) yum -y install "${missing[@]}" >&2 ;;
        el9) dnf -y install "${missing[@]}" >&2 ;;
        debian12)
            if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
                apt-get update >&2
            fi
            # Keep config files a layer already wrote; never stop at a dpkg prompt.
            DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
                -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
                "${missing[@]}" >&2
            ;;
    esac
    ez_changed "installed packages: ${missing[*]}"
}

ez_unit_exists() {
    systemctl list-unit-files --no-legend "$1" 2>/dev/null | grep -q "^$1"
}

ez_service_enable() {
    local u
    for u in "$@"; do
        if ! systemctl is-enabled --quiet "$u" 2>/dev/null; then
            systemctl enable "$u" >&2 2>/dev/null || systemctl enable "$u" >&2
            ez_changed "enabled $u"
        fi
        if ez_live && ! systemctl is-active --quiet "$u"; then
            systemctl start "$u" >&2
            ez_changed "started $u"
        fi
    done
}

ez_service_disable() {
    local u
    for u in "$@"; do
        ez_unit_exists "$u" || continue
        if ez_live && systemctl is-active --quiet "$u"; then
            systemctl stop "$u" >&2
            ez_changed "stopped $u"
        fi
        if systemctl is-enabled --quiet "$u" 2>/dev/null; then
            systemctl disable "$u" >&2 2>/dev/null
            ez_changed "disabled $u"
        fi
    done
}

# Restart services when this layer's files changed in this run (and the system is live).
ez_restart_if_changed() {
    [ "${EZ_LAYER_CHANGED:-0}" = 1 ] || return 0
    ez_live || return 0
    local u
    for u in "$@"; do
        systemctl restart "$u" >&2
        ez_log "restarted $u (configuration changed)"
    done
}

# ez_sed FILE EXPR...: rewrite FILE with sed only when that changes it (keeps its inode and mode).
ez_sed() {
    local f=$1 tmp args=() e
    shift
    [ -f "$f" ] || ez_die "ez_sed: no file $f"
    for e in "$@"; do args+=(-e "$e"); done
    tmp=$(mktemp)
    sed "${args[@]}" "$f" >"$tmp"
    if cmp -s "$tmp" "$f"; then
        rm -f "$tmp"
        return 0
    fi
    cat "$tmp" >"$f"
    rm -f "$tmp"
    ez_changed "edited $f"
}

# ez_line FILE LINE: append LINE unless FILE already has it verbatim.
ez_line() {
    local f=$1 line=$2
    if [ -f "$f" ] && grep -qxF -- "$line" "$f"; then
        return 0
    fi
    mkdir -p "$(dirname "$f")"
    printf '%s\n' "$line" >>"$f"
    ez_changed "added a line to $f"
}

ez_mkdir() {
    local d
    for d in "$@"; do
        [ -d "$d" ] && continue
        mkdir -p "$d"
        ez_changed "created $d"
    done
}

ez_modprobe() {
    ez_live || return 0
    local m
    for m in "$@"; do
        modprobe -- "$m" 2>/dev/null || ez_log "warning: cannot load module $m"
    done
}

ez_marker() { [ -e "/var/lib/ezimg/markers/$1" ]; }
ez_mark() {
    ez_marker "$1" && return 0
    mkdir -p /var/lib/ezimg/markers
    : >"/var/lib/ezimg/markers/$1"
    ez_changed "marked $1"
}

ez_sha256() { sha256sum "$1" | cut -d' ' -f1; }

# ez_unpack_stage ARTIFACT PREFIX [EXCLUDE...]: unpack a build stage's output (paths relative to /)
# unless this very tarball is already unpacked; existing folders keep their owner and mode, and
# EXCLUDE patterns (configuration other layers render) are never touched. Sets EZ_STAGE_CHANGED
# to 1 or 0 (not the exit status: set -e is off inside functions tested by `if`).
ez_unpack_stage() {
    local name=$1 prefix=$2 tarball sum stamp ex=() p
    shift 2
    # shellcheck disable=SC2034 # read by the calling layer script
    EZ_STAGE_CHANGED=0
    for p in "$@"; do ex+=("--exclude=$p"); done
    stamp=$prefix/.ezimg-stage.sha256
    tarball=$(ez_artifact "$name") || exit 1
    sum=$(ez_sha256 "$tarball") || exit 1
    [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ] && return 0
    ez_mkdir "$prefix"
    tar -C / -xzf "$tarball" --no-overwrite-dir ${ex[@]+"${ex[@]}"} ||
        ez_die "unpacking $name ($tarball) failed"
    printf '%s\n' "$sum" >"$stamp"
    ez_changed "$name $sum unpacked into $prefix"
    # shellcheck disable=SC2034 # read by the calling layer script
    EZ_STAGE_CHANGED=1
}

# ez_rpm_checksig FILE FINGERPRINT KEYFILE: FILE must carry a valid OpenPGP signature by the key
# in KEYFILE (the one the lock pins). rpmkeys checks it against a private, throw-away keyring that
# holds only that key: the node's rpm database is not touched and no other key counts. Refuses an
# unsigned package (rpm -K then reports digests only), another key's signature and a modified
# header or payload.
ez_rpm_checksig() {
    local file=$1 fpr=$2 keyfile=$3 db out rc=0 id
    command -v rpmkeys >/dev/null 2>&1 ||
        ez_die "checking the signature of $file needs rpmkeys (package rpm)"
    [ -f "$keyfile" ] || ez_die "no key file $keyfile to check $file"
    db=$(mktemp -d) || ez_die "mktemp failed"
    if ! out=$(rpmdb --dbpath "$db" --initdb 2>&1 && rpmkeys --dbpath "$db" --import "$keyfile" 2>&1); then
        rm -rf "$db"
        ez_die "importing key $fpr from $keyfile failed: $out"
    fi
    out=$(LC_ALL=C rpmkeys --dbpath "$db" --checksig -v "$file" 2>&1) || rc=$?
    rm -rf "$db"
    # rpm prints the last 8 hex digits of the signing key's id, in lower case.
    id=${fpr: -8}
    id=${id,,}
    if [ "$rc" -ne 0 ] ||
        printf '%s\n' "$out" | grep -qE '^[[:space:]].*(BAD|NOT OK|NOKEY|NOTTRUSTED)' ||
        ! printf '%s\n' "$out" | grep -qE "^[[:space:]].*Signature, key ID $id: OK"; then
        ez_die "$file: OpenPGP signature check failed (it must be signed by key $fpr): $(printf '%s' "$out" | tr -s '\n ' ' ')"
    fi
}

# ez_secret_names FILE: the names of the secret placeholders (@@EZIMG_SECRET_<name>@@, the syntax
# of src/bundle/format.rs) in FILE, sorted and unique, one a line; nothing when it holds none.
ez_secret_names() {
    { grep -o '@@EZIMG_SECRET_[a-z0-9_][a-z0-9_]*@@' "$1" || true; } |
        sed 's/^@@EZIMG_SECRET_//; s/@@$//' | LC_ALL=C sort -u
}

# ez_pinned_sha NAME: print the sha256 the bundle's artifacts.list pins for artifact NAME ("-"
# when none is pinned; nothing when the bundle does not list it). ez_pin NAME: "<sha256|-> <file>".
# The line format is src/bundle/format.rs's (`<name> <sha256|-> <file>`); a test compares these
# readers with its Rust one on real bundles.
ez_pin() { awk -v n="$1" '$1 == n { print $2, $3; exit }' "$EZ_BUNDLE/artifacts.list"; }
ez_pinned_sha() { ez_pin "$1" | cut -d' ' -f1; }

# ez_artifact NAME: print the path of artifact NAME, verified against the bundle's artifacts.list
# (and, for a signed RPM listed in signatures.list, by its signature: ez_rpm_checksig).
# Looks in $EZ_ARTIFACTS (a directory, or an http(s) base URL fetched into the node's cache) and
# in /var/cache/ezimg/artifacts (where an image bake leaves them).
ez_artifact() {
    local name=$1 sha file cache=/var/cache/ezimg/artifacts path="" fpr=""
    read -r sha file < <(ez_pin "$name")
    [ -n "${sha:-}" ] || ez_die "artifact $name is not in this bundle's artifacts.list"
    case "${EZ_ARTIFACTS:-}" in
        http://* | https://*)
            if [ ! -f "$cache/$file" ]; then
                mkdir -p "$cache"
                curl -fsSL --retry 3 -o "$cache/$file.part" "${EZ_ARTIFACTS%/}/$file" ||
                    ez_die "fetching artifact $name from ${EZ_ARTIFACTS%/}/$file failed"
                mv -f "$cache/$file.part" "$cache/$file"
            fi
            path=$cache/$file
            ;;
        "") path=$cache/$file ;;
        *) if [ -f "$EZ_ARTIFACTS/$file" ]; then path=$EZ_ARTIFACTS/$file; else path=$cache/$file; fi ;;
    esac
    [ -f "$path" ] || ez_die "artifact $name ($file) not found: pass --artifacts DIR|URL to apply"
    if [ "$(ez_sha256 "$path")" != "$sha" ]; then
        case "$path" in "$cache"/*) rm -f "$path" ;; esac
        ez_die "artifact $name ($path): sha256 mismatch, expected $sha"
    fi
    if [ -f "$EZ_BUNDLE/signatures.list" ]; then
        fpr=$(awk -v n="$name" '$1 == n { print $2 }' "$EZ_BUNDLE/signatures.list")
    fi
    if [ -n "$fpr" ]; then
        ez_rpm_checksig "$path" "$fpr" "$EZ_BUNDLE/keys/$fpr.asc"
    fi
    printf '%s\n' "$path"
}
