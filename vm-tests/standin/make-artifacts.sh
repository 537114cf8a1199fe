#!/usr/bin/env bash
# make-artifacts.sh OUTDIR: write the STAND-IN artifacts the VM tests pin in place of the real
# Kubernetes downloads, and print one line per artifact on stdout:
#
#     <lock name> <file name in OUTDIR> <sha256>
#
# for kubeadm kubelet kubectl crictl cni-plugins calico-tigera-operator (the names in
# artifacts.lock). Deterministic: the same sources give the same bytes (fixed mtimes, owners and
# modes, sorted tar members, gzip without name/time), so the lock the tests write is stable and
# the bake cache hits. Needs bash, coreutils, awk, GNU tar and gzip; nothing is downloaded.
set -euo pipefail
export LC_ALL=C TZ=UTC

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:?usage: make-artifacts.sh OUTDIR}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# put SRC FILE: SRC as OUTDIR/FILE, mode 0755 or 0644 as given, mtime 0, written atomically.
put() {
    local src=$1 file=$2 mode=$3
    install -m "$mode" "$src" "$out/.$file.tmp"
    touch -d @0 "$out/.$file.tmp"
    mv -f "$out/.$file.tmp" "$out/$file"
}

# tgz DIR FILE MEMBER...: a reproducible tar.gz of DIR's MEMBERs.
tgz() {
    local dir=$1 file=$2
    shift 2
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
        --mode=u=rwx,go=rx -C "$dir" -cf - "$@" | gzip -n -9 >"$work/$file"
    put "$work/$file" "$file" 0644
}

# kubeadm carries its API server: apiserver.py goes into the EMBEDDED_APISERVER line (base64,
# so no quoting can break), and kubeadm writes it out on the node before starting it.
api_b64=$(base64 -w0 "$here/apiserver.py")
awk -v b="$api_b64" '
    $0 == "EMBEDDED_APISERVER = None" {
        print "EMBEDDED_APISERVER = __import__(\"base64\").b64decode(\"" b "\").decode()  # apiserver.py (make-artifacts.sh)"
        n++
        next
    }
    { print }
    END { if (n != 1) exit 1 }' "$here/kubeadm" >"$work/kubeadm" ||
    { echo "make-artifacts.sh: no EMBEDDED_APISERVER = None line in kubeadm" >&2; exit 1; }
put "$work/kubeadm" kubeadm-STANDIN 0755
put "$here/kubelet" kubelet-STANDIN 0755
put "$here/kubectl" kubectl-STANDIN 0755

mkdir -p "$work/crictl" "$work/cni"
install -m 0755 "$here/crictl" "$work/crictl/crictl"
tgz "$work/crictl" crictl-STANDIN.tar.gz crictl

# The plugin names of containernetworking/plugins' release that containerd's CRI looks for.
for p in bridge host-local loopback portmap; do
    install -m 0755 "$here/cni-plugin" "$work/cni/$p"
done
tgz "$work/cni" cni-plugins-STANDIN.tgz ./bridge ./host-local ./loopback ./portmap

put "$here/calico-tigera-operator.yaml" calico-tigera-operator-STANDIN.yaml 0644

for pair in kubeadm:kubeadm-STANDIN kubelet:kubelet-STANDIN kubectl:kubectl-STANDIN \
    crictl:crictl-STANDIN.tar.gz cni-plugins:cni-plugins-STANDIN.tgz \
    calico-tigera-operator:calico-tigera-operator-STANDIN.yaml; do
    name=${pair%%:*} file=${pair#*:}
    printf '%s %s %s\n' "$name" "$file" "$(sha256sum "$out/$file" | cut -d' ' -f1)"
done
