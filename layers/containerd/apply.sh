#!/usr/bin/env bash
# Seed: modprobe -- overlay; modprobe -- br_netfilter; systemctl enable containerd --now;
# systemctl restart containerd (after the config edits).
ez_modprobe overlay br_netfilter
# The net.bridge.* keys of the sysctl layer exist only now that br_netfilter is loaded.
if ez_live; then
    sysctl -e --system >/dev/null
fi

# containerd.service comes from nerdctl-full (/usr/local/lib/systemd/system).
ez_service_enable containerd
ez_restart_if_changed containerd
