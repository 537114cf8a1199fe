#!/usr/bin/env bash
# Seed: yum install <build deps>; ./configure --prefix=/ezops/service/keepalived; make install.
# The build happens once in the stage; the node needs the runtime libraries of the seed's build
# dependencies (netlink, netfilter, OpenSSL) and ipvsadm (also installed by the ipvs layer).
{% if os == "debian12" %}
ez_pkg_install ipvsadm libnl-3-200 libnl-genl-3-200 libnl-route-3-200 libnfnetlink0 libssl3 libmagic1
{% else %}
ez_pkg_install ipvsadm libnl3 libnfnetlink openssl-libs file-libs
{% endif %}

# Never overwrite what keepalived-config and the LB layers install.
ez_unpack_stage keepalived-stage /ezops/service/keepalived \
    etc/keepalived/keepalived.conf 'etc/keepalived/*_process_check.sh'
# A running keepalived keeps the old binary until restarted.
if [ "$EZ_STAGE_CHANGED" = 1 ] && ez_live && systemctl is-active --quiet keepalived; then
    systemctl restart keepalived
fi
