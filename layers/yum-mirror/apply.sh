#!/usr/bin/env bash
# Seed: move every *.repo to backup-$(date +%F), fetch the mirror's .repo, yum clean all && makecache.
# Only repos other than ours are moved, so a second run moves nothing; a repo an update brings
# back (e.g. centos-release's CentOS-Base.repo) is moved again.
moved=0
backup=/etc/yum.repos.d/backup-$(date +%F)
for f in /etc/yum.repos.d/*.repo; do
    [ -e "$f" ] || continue
    [ "$f" = /etc/yum.repos.d/ezimg-mirror.repo ] && continue
    ez_mkdir "$backup"
    mv "$f" "$backup/"
    ez_changed "moved $f to $backup"
    moved=1
done

if [ "$moved" = 1 ] || [ "${EZ_LAYER_CHANGED:-0}" = 1 ]; then
    {{ "yum" if os == "el7" else "dnf" }} clean all
    {{ "yum" if os == "el7" else "dnf" }} -y makecache
fi
