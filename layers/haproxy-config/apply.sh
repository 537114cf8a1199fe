#!/usr/bin/env bash
# Seed 004: systemctl enable --now haproxy
haproxy -c -q -f /etc/haproxy/haproxy.cfg
ez_service_enable haproxy
# Reload keeps established API connections (haproxy hands its listeners to the new process).
if ez_live && [ "${EZ_LAYER_CHANGED:-0}" = 1 ] && systemctl is-active --quiet haproxy; then
    systemctl reload haproxy
fi
