#!/bin/bash
# haproxy 进程检测 (seed 004 check_apiserver.sh), keepalived's vrrp_script check_haproxy: when
# haproxy is gone, stop keepalived so the VIP moves to the other slb.
# pgrep -x: the seed's `pgrep haproxy` also matches this script's own process name
# (haproxy_process_check.sh), so it could never report haproxy down.
# Failures go to the journal (the seed echoes to keepalived's discarded stdout).
err=0
for _ in 1 2 3; do
    if pgrep -x haproxy >/dev/null; then
        err=0
        break
    fi
    err=$((err + 1))
    sleep 1
done

if [ "$err" != 0 ]; then
    logger -t keepalived-check -p daemon.err "haproxy is not running, stopping keepalived"
    # --no-block: this script is keepalived's child (see nginx_process_check.sh).
    /usr/bin/systemctl stop --no-block keepalived
    exit 1
fi
exit 0
