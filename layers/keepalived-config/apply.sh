#!/usr/bin/env bash
# enable_script_security: keepalived skips the check script if it or any folder above it is
# writable by group or others. The folders may come from a stage tarball or a umask we do not
# control, so make sure here.
for d in /ezops /ezops/service /ezops/service/keepalived /ezops/service/keepalived/etc \
    /ezops/service/keepalived/etc/keepalived; do
    if [ -n "$(find "$d" -maxdepth 0 \( -perm -g+w -o -perm -o+w -o ! -user root \))" ]; then
        chown root "$d"
        chmod go-w "$d"
        ez_changed "$d made root-owned and not group/world-writable for keepalived"
    fi
done

ez_service_enable keepalived
# SIGHUP re-reads the config without dropping the VIP.
if ez_live && [ "${EZ_LAYER_CHANGED:-0}" = 1 ] && systemctl is-active --quiet keepalived; then
    systemctl reload keepalived
fi
