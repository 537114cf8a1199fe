#!/bin/bash
# ezimg apply: install this role bundle's layers for one node. Idempotent: a second run changes
# nothing. The same entry point serves kickstart %post, cloud-init runcmd and image bakes.
set -euo pipefail

EZ_BUNDLE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export EZ_BUNDLE

usage() {
    cat <<'USAGE'
usage: apply [--node NAME] [--artifacts DIR|URL] [--secrets DIR]
       apply [--node NAME] --list-steps | --list-artifacts | --list-nodes
  --node            node to apply (default: $EZIMG_NODE, /etc/ezimg/node, then the short hostname)
  --artifacts       where pinned artifacts are: a directory or an http(s) base URL
  --secrets         directory of secret files (default /etc/ezimg/secrets)
  --list-steps      print the node's steps as apply reads them (one tab-separated record a line)
  --list-artifacts  print artifacts.list as apply reads it (tab-separated), and change nothing
USAGE
}

node=${EZIMG_NODE:-}
list=""
EZ_ARTIFACTS=${EZ_ARTIFACTS:-}
EZ_SECRETS=${EZ_SECRETS:-/etc/ezimg/secrets}
while [ $# -gt 0 ]; do
    case "$1" in
        --node) node=${2:?--node needs a value}; shift 2 ;;
        --artifacts) EZ_ARTIFACTS=${2:?--artifacts needs a value}; shift 2 ;;
        --secrets) EZ_SECRETS=${2:?--secrets needs a value}; shift 2 ;;
        --list-nodes) ls "$EZ_BUNDLE/nodes"; exit 0 ;;
        --list-steps | --list-artifacts) list=${1#--list-}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "apply: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
export EZ_ARTIFACTS EZ_SECRETS

# Verify before sourcing anything from the bundle.
if ! (cd "$EZ_BUNDLE" && sha256sum --quiet --strict -c MANIFEST) >&2; then
    echo "ezimg[apply]: error: bundle $EZ_BUNDLE is damaged: MANIFEST check failed" >&2
    exit 1
fi

# shellcheck source=lib.sh
. "$EZ_BUNDLE/lib/ezimg.sh"

# The readers of the bundle's line formats (the grammar is src/bundle/format.rs's; a test runs
# --list-steps and --list-artifacts against its Rust reader). Each calls HANDLER with the fields.
# each_step HANDLER: nodes/$EZ_NODE/steps on fd 3, so nothing a step runs (dpkg, read) can
# swallow them from stdin.
each_step() {
    local handler=$1 kind a b c
    while read -r -u 3 kind a b c; do
        case "$kind" in
            layer | file | unit | script) "$handler" "$kind" "$a" "$b" "$c" ;;
            "" | "#"*) ;;
            *) ez_die "bad step '$kind' in nodes/$EZ_NODE/steps" ;;
        esac
    done 3<"$EZ_BUNDLE/nodes/$EZ_NODE/steps"
}

# each_artifact HANDLER: artifacts.list (name, sha256 or "-", file) on fd 4.
each_artifact() {
    local handler=$1 name sha file
    while read -r -u 4 name sha file; do
        case "$name" in "" | "#"*) continue ;; esac
        "$handler" "$name" "$sha" "$file"
    done 4<"$EZ_BUNDLE/artifacts.list"
}

print_fields() {
    local IFS=$'\t'
    printf '%s\n' "$*"
}

if [ "$list" = artifacts ]; then
    each_artifact print_fields
    exit 0
fi

if [ -z "$node" ] && [ -s /etc/ezimg/node ]; then node=$(head -n1 /etc/ezimg/node); fi
if [ -z "$node" ]; then node=$(hostname -s); fi
[ -f "$EZ_BUNDLE/nodes/$node/steps" ] ||
    ez_die "node '$node' is not in this bundle (nodes: $(ls "$EZ_BUNDLE/nodes" | tr '\n' ' '))"
EZ_NODE=$node
EZ_OS=$(sed -n 's/^os=//p' "$EZ_BUNDLE/bundle.env")
EZ_ROLE=$(sed -n 's/^role=//p' "$EZ_BUNDLE/bundle.env")
export EZ_NODE EZ_OS EZ_ROLE

if [ "$list" = steps ]; then
    each_step print_fields
    exit 0
fi

mkdir -p /var/lib/ezimg
exec 9>/var/lib/ezimg/apply.lock
flock -n 9 || ez_die "another apply is running"

EZ_CHANGES_FILE=$(mktemp)
export EZ_CHANGES_FILE
trap 'rm -f "$EZ_CHANGES_FILE"' EXIT

# Fill @@EZIMG_SECRET_<name>@@ placeholders from $EZ_SECRETS/<name>. awk with ENVIRON takes the
# values literally (no escape or & processing), and nothing is echoed.
fill_secrets() {
    local f=$1 n envs=()
    for n in $(ez_secret_names "$f"); do
        [ -r "$EZ_SECRETS/$n" ] ||
            ez_die "secret '$n' missing in $EZ_SECRETS: it is delivered by the node's seed or kickstart"
        envs+=("EZS_$n=$(cat "$EZ_SECRETS/$n")")
    done
    env "${envs[@]}" awk '{
        line = $0; out = ""
        while ((i = index(line, "@@EZIMG_SECRET_")) > 0) {
            rest = substr(line, i + 15); j = index(rest, "@@")
            out = out substr(line, 1, i - 1) ENVIRON["EZS_" substr(rest, 1, j - 1)]
            line = substr(rest, j + 2)
        }
        print out line
    }' "$f"
}

install_file() {
    local mode=$1 sha=$2 dest=$3 src="$EZ_BUNDLE/blobs/$2" dir tmp
    dir=$(dirname "$dest")
    [ -d "$dir" ] || mkdir -p "$dir"
    tmp=$(mktemp "$dir/.ezimg.XXXXXX")
    if [ -n "$(ez_secret_names "$src")" ]; then
        chmod 600 "$tmp"
        fill_secrets "$src" >"$tmp"
    else
        cat "$src" >"$tmp"
    fi
    if [ -f "$dest" ] && cmp -s "$tmp" "$dest" &&
        [ "$(stat -c %a "$dest")" = "$(printf '%o' $((8#$mode)))" ]; then
        rm -f "$tmp"
        return 0
    fi
    chmod "$mode" "$tmp"
    chown 0:0 "$tmp" 2>/dev/null || true
    mv -f "$tmp" "$dest"
    ez_changed "installed $dest"
    EZ_LAYER_CHANGED=1
}

run_script() {
    local sha=$1 src=$2
    ez_log "running $src"
    # A new bash process: inside `if ! ( … )` errexit would be off for the whole script.
    if ! bash -euo pipefail -c '. "$1/lib/ezimg.sh"; . "$1/blobs/$2"' ezimg-step "$EZ_BUNDLE" "$sha" </dev/null; then
        ez_die "layer $EZ_LAYER: script $src failed"
    fi
}

# Preflight: every artifact this bundle pins must have a digest and be at hand (verified, or
# fetched and verified) before anything changes, so a node never stops halfway through the
# layers. Failures are collected and named together.
missing=()
preflight_artifact() {
    local name=$1 sha=$2 file=$3 err
    if [ "$sha" = - ]; then
        missing+=("$name ($file): no digest pinned (built with --allow-incomplete)")
    elif ! err=$( (ez_artifact "$name" >/dev/null) 2>&1); then
        missing+=("$name ($file): ${err##*error: }")
    fi
}
each_artifact preflight_artifact
if [ "${#missing[@]}" -gt 0 ]; then
    ez_log "error: nothing was changed: ${#missing[@]} artifact(s) missing or unverified:"
    for m in "${missing[@]}"; do ez_log "  $m"; done
    exit 1
fi

units_reloaded=0
EZ_LAYER=""
EZ_LAYER_CHANGED=0
export EZ_LAYER EZ_LAYER_CHANGED
apply_step() {
    local kind=$1 a=$2 b=$3 c=$4
    case "$kind" in
        layer) EZ_LAYER=$a; EZ_LAYER_CHANGED=0; units_reloaded=0; ez_log "layer $a" ;;
        file) install_file "$a" "$b" "$c" ;;
        unit)
            if [ "$EZ_LAYER_CHANGED" = 1 ] && [ "$units_reloaded" = 0 ] && ez_live; then
                systemctl daemon-reload
                units_reloaded=1
            fi
            if [ "$b" = 1 ]; then ez_service_enable "$a"; fi
            ;;
        script) run_script "$a" "$b" ;;
    esac
}
each_step apply_step

EZ_LAYER=""
state="bundle=$(sha256sum "$EZ_BUNDLE/MANIFEST" | cut -d' ' -f1) node=$EZ_NODE"
if [ "$(cat /var/lib/ezimg/applied 2>/dev/null || true)" != "$state" ]; then
    printf '%s\n' "$state" >/var/lib/ezimg/applied
fi
changes=$(wc -l <"$EZ_CHANGES_FILE")
ez_log "node $EZ_NODE (role $EZ_ROLE, $EZ_OS): $changes changes"
printf 'ezimg apply: %s changes\n' "$changes"

# A layer asked for a reboot (kernel-ml: the new kernel runs from the next boot; it asks once per
# node). At the very end, so every layer is in place, and a minute later, so the caller (cloud-init's
# final stage) finishes first; `shutdown -c` cancels it. Units that must wait for it are conditioned
# on the flag, which /run loses with the reboot.
if ez_live && [ -e /run/ezimg/reboot-required ] && [ ! -e /run/ezimg/reboot-scheduled ]; then
    why=$(head -n1 /run/ezimg/reboot-required)
    ez_log "rebooting in 1 minute: $why"
    shutdown -r +1 "ezimg: $why" >&2
    : >/run/ezimg/reboot-scheduled
fi
