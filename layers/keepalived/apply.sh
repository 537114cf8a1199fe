#!/usr/bin/env bash
# Seed: yum install <build deps>; ./configure --prefix=/ezops/service/keepalived; make install.
# The build happens once in the stage; the node needs the runtime libraries of the seed's build
# dependencies (netlink, netfilter, OpenSSL) and ipvsadm (also installed by the ipvs layer).
{% if os == "debian12" %}
ez_pkg_install ipvsadm libnl-3-200 libnl-genl-3-200 libnl-route-3-200 libnfnetlink0 libssl3
{% else %}
ez_pkg_install ipvsadm libnl3 libnfnetlink openssl-libs
{% endif %}

prefix=/ezops/service/keepalived
stamp=$prefix/.ezimg-stage.sha256
tarball=$(ez_artifact keepalived-stage)
sum=$(sha256sum "$tarball" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
    ez_mkdir "$prefix"
    # Never overwrite what keepalived-config and the LB layers install.
    # --no-overwrite-dir: existing folders (/ezops …) keep their owner and mode.
    tar -C / -xzf "$tarball" --no-overwrite-dir \
        --exclude=etc/keepalived/keepalived.conf --exclude='etc/keepalived/*_process_check.sh'
    echo "$sum" > "$stamp"
    ez_changed "keepalived stage $sum unpacked into $prefix"
    if ez_live && systemctl is-active --quiet keepalived; then
        systemctl restart keepalived
    fi
fi
