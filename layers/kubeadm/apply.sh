#!/usr/bin/env bash
{% if node.hostname == kubernetes.init_node %}
# Seed 001 downloads Calico's tigera-operator.yaml on master-1; here the pinned manifest
# (artifact calico-tigera-operator, Calico {{ kubernetes.calico_version }}) goes beside
# custom-resources.yaml, where ezimg-join applies both after kubeadm init.
dest=/etc/kubernetes/ezimg/calico/tigera-operator.yaml
want=$(ez_pinned_sha calico-tigera-operator)
have=""
if [ -f "$dest" ]; then have=$(ez_sha256 "$dest"); fi
if [ -z "$want" ] || [ "$want" = "-" ] || [ "$have" != "$want" ]; then
    src=$(ez_artifact calico-tigera-operator)
    if [ "$have" != "$(ez_sha256 "$src")" ]; then
        ez_mkdir /etc/kubernetes/ezimg/calico
        install -m 0644 "$src" "$dest.ezimg-new"
        mv -f "$dest.ezimg-new" "$dest"
        ez_changed "installed Calico's tigera-operator.yaml as $dest"
    fi
fi
{% else %}
# Nothing to do on {{ node.hostname }}: only {{ kubernetes.init_node }} applies Calico's manifests.
:
{% endif %}
