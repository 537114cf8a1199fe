#!/bin/bash
# Nginx 进程检测脚本 (seed 000), keepalived's vrrp_script check_nginx: when nginx is gone,
# stop keepalived so the VIP moves to the other slb.
# It looks for a process named exactly `nginx` (pgrep -x, the kernel's comm), which this
# script's own name does not match (the seed's warning: a pattern matching the script itself
# never reports nginx down). Not the seed's `pgrep -f`: reading every process's cmdline can
# block behind an exiting process (seen under TCG right after `systemctl stop nginx`: the
# check hung past keepalived's timeout and never stopped keepalived).
# Deviation: the seed appends to /tmp/keepalived.log every 5 s; a root-written file in /tmp is
# a symlink trap, so only failures are logged, to the journal.
err=0

# 三次进程检测
for _ in 1 2 3; do
    if pgrep -x nginx >/dev/null; then
        err=0
        break
    fi
    err=$((err + 1))
    sleep 1
done

# 判断检测结果
if [ "$err" != 0 ]; then
    logger -t keepalived-check -p daemon.err "Nginx 进程检测异常，开始停止 Keepalived ..."
    # --no-block: this script is keepalived's child; waiting for keepalived's stop from
    # inside it only ties the two together until keepalived's script timeout kills it.
    /usr/bin/systemctl stop --no-block keepalived
    exit 1
fi
exit 0
