#!/usr/bin/env bash
# Seed 002 节点磁盘挂载: the seed partitions each new disk (fdisk), runs mkfs.xfs and adds a UUID
# line to fstab, then symlinks /data/kubelet and /data/containers. Here a whole-disk filesystem
# (no partition table to misread; it grows with the disk), mounted by label, and bind mounts
# instead of symlinks (the kubelet resolves its root directory, and a symlinked
# /var/lib/kubelet breaks its volume cleanup); /var/lib/containerd is what containerd uses (the
# seed's /var/lib/containers is podman's). Formatting happens only on a blank disk: a re-apply or
# a reinstall mounts the disk as it is, and a disk with anything else on it stops the apply,
# untouched (ezimg-disks says why).
# Both mkfs tools on every node of the role, whatever this node's disks: a role image is baked
# with its first node's layers, and another node's first boot may have no package repository.
ez_pkg_install xfsprogs e2fsprogs
# The image bake is a root for every node of the role, with none of their disks: the node's
# first boot (its live apply) sets them up.
if [ "${EZIMG_IMAGE_BAKE:-0}" = 1 ]; then
    ez_log "image bake: the disks are set up at the node's first boot"
    exit 0
fi
{% if not (node.disks | selectattr('mount') | list) %}
ez_log "no etcd or data disk on this node"
exit 0
{% endif %}
live=()
if ez_live; then live=(--live); fi
set +e
out=$(/usr/local/lib/ezimg/ezimg-disks ${live[@]+"${live[@]}"}{% for d in node.disks %} '{{ d.purpose }}:{{ d.device }}{% if d.fs %}:{{ d.fs }}{% endif %}'{% endfor %})
rc=$?
set -e
while read -r line; do
    case "$line" in "CHANGED "*) ez_changed "${line#CHANGED }" ;; esac
done <<<"$out"
[ "$rc" = 0 ] || ez_die "the node's disks are not set up (see above); nothing on them was destroyed"
