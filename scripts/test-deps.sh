#!/usr/bin/env bash
# Install what tests/kickstart.rs, tests/cloudinit.rs, tests/serve.rs and benches/seed.rs need
# on Debian 12:
#   - host tools: mtools, dosfstools, xorriso, genisoimage (isoinfo), cloud-image-utils
#     (cloud-localds), util-linux (blkid), dnsmasq-base (`dnsmasq --test` of the generated
#     dnsmasq.conf; only the binary, no service); tests/iso.rs: isolinux, syslinux-common,
#     grub-efi-amd64-bin (an installer-like ISO), isomd5sum (the media-check digest);
#     docker-registry (tests/images.rs runs its own instances on 127.0.0.1; the package's
#     service is stopped and disabled);
#   - .venv (project root): pykickstart (ksvalidator) and cloud-init's Python deps;
#   - .venv/cloud-init: Debian's cloud-init package unpacked with dpkg -x, never installed
#     (an installed cloud-init would act on this machine's next boot).
# Idempotent: every step checks first, so a second run takes well under a second.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
ci_dir="$venv/cloud-init"
# Bump to force a reinstall of the venv's packages when the list below changes.
stamp_version=1
py_pkgs=(pykickstart pyyaml jinja2 jsonschema jsonpatch configobj requests oauthlib)

log() { printf 'test-deps: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Host tools: command -> Debian package providing it.
declare -A need=(
    [mdir]=mtools [mkfs.vfat]=dosfstools [xorriso]=xorriso [isoinfo]=genisoimage
    [cloud-localds]=cloud-image-utils [blkid]=util-linux [dpkg-deb]=dpkg
    [dnsmasq]=dnsmasq-base [implantisomd5]=isomd5sum [checkisomd5]=isomd5sum
    [grub-mkimage]=grub-efi-amd64-bin [docker-registry]=docker-registry
)
missing=()
for cmd in "${!need[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 \
        || missing+=("${need[$cmd]}")
done
# Files, not commands: tests/iso.rs builds an installer-like ISO from isolinux, ldlinux.c32 and
# GRUB's EFI modules.
[ -f /usr/lib/ISOLINUX/isolinux.bin ] || missing+=(isolinux)
[ -f /usr/lib/syslinux/modules/bios/ldlinux.c32 ] || missing+=(syslinux-common)
[ -f /usr/lib/grub/x86_64-efi/linux.mod ] || missing+=(grub-efi-amd64-bin)
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The tests start their own registries; the package's service would hold port 5000.
    if [[ " ${missing[*]} " == *" docker-registry "* ]] && command -v systemctl >/dev/null 2>&1; then
        as_root systemctl disable --now docker-registry.service >/dev/null 2>&1 || true
    fi
fi

# Debian's python3, not a pyenv shim: cloud-init is packaged for it.
if [ ! -x "$venv/bin/python" ]; then
    log "creating $venv"
    /usr/bin/python3 -m venv "$venv"
fi
if [ "$(cat "$venv/.ezimg-deps" 2>/dev/null)" != "$stamp_version" ]; then
    log "installing ${py_pkgs[*]} into $venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "${py_pkgs[@]}"
    echo "$stamp_version" >"$venv/.ezimg-deps"
fi

if [ ! -f "$ci_dir/.done" ]; then
    log "unpacking Debian's cloud-init into $ci_dir"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && apt-get download cloud-init >/dev/null 2>"$tmp/err") || {
        # The package lists may be missing on a fresh machine.
        as_root apt-get update -qq
        (cd "$tmp" && apt-get download cloud-init >/dev/null)
    }
    rm -rf "$ci_dir"
    dpkg -x "$tmp"/cloud-init_*.deb "$ci_dir"
    dpkg-deb -f "$tmp"/cloud-init_*.deb Version >"$ci_dir/.done"
fi

# One line for logs: what the tests will use.
log "ok: pykickstart $("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('pykickstart'))"), cloud-init $(cat "$ci_dir/.done")"
