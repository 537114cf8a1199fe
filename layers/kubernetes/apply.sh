#!/usr/bin/env bash
# Seed 001 installs kubeadm, kubelet and kubectl from a package repository; here the pinned
# release binaries of artifacts.lock go to /usr/local/bin (one version on every OS, no repo).

# What `kubeadm init/join` preflight looks for on the PATH: conntrack, ip, iptables, mount,
# nsenter (errors); ebtables, ethtool, socat, tc (warnings); crictl (below). ipset and ipvsadm
# come with the ipvs layer; curl is what ezimg-join probes the API servers with.
{% if os == "el7" %}
ez_pkg_install conntrack-tools socat ebtables ethtool iptables iproute util-linux curl
{% elif os == "el9" %}
# el9 has no iptables/ebtables packages: iptables-nft provides both commands; tc is iproute-tc.
# curl by path: images ship curl-minimal, which conflicts with the package named curl.
ez_pkg_install conntrack-tools socat iptables-nft ethtool iproute iproute-tc util-linux /usr/bin/curl
{% else %}
ez_pkg_install conntrack socat ebtables ethtool iptables iproute2 mount util-linux curl
{% endif %}


# install_binary NAME DEST: install the "binary" artifact NAME as DEST (0755) unless DEST already
# is that file. The installed file is compared with the pin first, so a second apply copies nothing.
install_binary() {
    local name=$1 dest=$2 want have="" src
    want=$(ez_pinned_sha "$name")
    if [ -f "$dest" ]; then have=$(ez_sha256 "$dest"); fi
    if [ -x "$dest" ] && [ -n "$want" ] && [ "$want" != "-" ] && [ "$have" = "$want" ]; then
        return 0
    fi
    src=$(ez_artifact "$name")
    if [ -x "$dest" ] && [ "$have" = "$(ez_sha256 "$src")" ]; then
        return 0
    fi
    install -m 0755 "$src" "$dest.ezimg-new"
    mv -f "$dest.ezimg-new" "$dest"
    ez_changed "installed $name as $dest"
    changed_binaries="$changed_binaries $name"
}

changed_binaries=""
install_binary kubeadm /usr/local/bin/kubeadm
install_binary kubelet /usr/local/bin/kubelet
install_binary kubectl /usr/local/bin/kubectl

# crictl (cri-tools tarball holding the single file `crictl`): kubeadm 1.29's preflight requires it
# with containerd. The stamp keeps the tarball's digest, so an unchanged pin is not unpacked again.
# /etc/crictl.yaml (seed 000 配置 crictl) is the containerd layer's.
ez_mkdir /var/lib/ezimg/kubernetes
stamp=/var/lib/ezimg/kubernetes/crictl.sha256
want=$(ez_pinned_sha crictl)
if [ ! -x /usr/local/bin/crictl ] || [ "$want" = "-" ] || [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    tarball=$(ez_artifact crictl)
    tmp=$(mktemp -d)
    tar -C "$tmp" -xzf "$tarball" crictl
    if ! cmp -s "$tmp/crictl" /usr/local/bin/crictl; then
        install -m 0755 "$tmp/crictl" /usr/local/bin/crictl.ezimg-new
        mv -f /usr/local/bin/crictl.ezimg-new /usr/local/bin/crictl
        ez_changed "installed crictl as /usr/local/bin/crictl"
    fi
    rm -rf "$tmp"
    ez_sha256 "$tarball" >"$stamp"
fi

# CNI plugins where containerd's CRI looks for them: bin_dir = /opt/cni/bin (containerd layer's
# config.toml). Calico's installer adds its own plugins there later.
ez_mkdir /opt/cni/bin
{% if params.containerd_source == "nerdctl-full" %}
# nerdctl-full keeps its CNI plugins in /usr/local/libexec/cni (nerdctl's own path): copy the
# ones missing from /opt/cni/bin. Existing files stay, so Calico's versions are never replaced.
for plugin in /usr/local/libexec/cni/*; do
    [ -f "$plugin" ] || continue
    name=$(basename "$plugin")
    if [ ! -e "/opt/cni/bin/$name" ]; then
        cp -p "$plugin" "/opt/cni/bin/$name"
        ez_changed "CNI plugin $name copied from nerdctl-full into /opt/cni/bin"
    fi
done
{% else %}
# The distribution's containerd brings no CNI plugins: the pinned containernetworking/plugins.
stamp=/var/lib/ezimg/kubernetes/cni-plugins.sha256
want=$(ez_pinned_sha cni-plugins)
if [ "$want" = "-" ] || [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    tarball=$(ez_artifact cni-plugins)
    sum=$(ez_sha256 "$tarball")
    if [ "$(cat "$stamp" 2>/dev/null || true)" != "$sum" ]; then
        tar -C /opt/cni/bin -xzf "$tarball" --no-same-owner --no-overwrite-dir
        printf '%s\n' "$sum" >"$stamp"
        ez_changed "cni-plugins $sum unpacked into /opt/cni/bin"
    fi
fi
{% endif %}

# What the kubelet package creates (kubeadm expects them).
ez_mkdir /etc/kubernetes/manifests /var/lib/kubelet

# Enabled (and started when live): until kubeadm configures it, the kubelet exits and systemd
# restarts it every 10 s, as with the packages. A running kubelet restarts on a new binary or unit.
restart=0
case " $changed_binaries " in *" kubelet "*) restart=1 ;; esac
if [ "${EZ_LAYER_CHANGED:-0}" = 1 ]; then restart=1; fi
was_active=0
if ez_live && systemctl is-active --quiet kubelet; then was_active=1; fi
ez_service_enable kubelet
if [ "$was_active" = 1 ] && [ "$restart" = 1 ]; then
    systemctl restart kubelet
    ez_log "restarted kubelet (binary or unit changed)"
fi
