#!/usr/bin/env bash
# Seed: yum -y install chrony; timedatectl set-timezone; systemctl enable --now chronyd;
# chronyc makestep.
ez_pkg_install chrony

# timedatectl needs a running systemd; the /etc/localtime link it writes works in a chroot too.
tz="{{ cluster.timezone }}"
if [ "$(readlink /etc/localtime)" != "/usr/share/zoneinfo/$tz" ]; then
    ln -sfn "/usr/share/zoneinfo/$tz" /etc/localtime
    ez_changed "timezone $tz"
fi
{% if os == "debian12" %}
# Debian also keeps the name in /etc/timezone (tzdata reads it on upgrades).
if [ "$(cat /etc/timezone 2>/dev/null)" != "$tz" ]; then
    echo "$tz" > /etc/timezone
    ez_changed "/etc/timezone $tz"
fi
{% endif %}

{% set unit = "chrony" if os == "debian12" else "chronyd" %}
ez_service_enable {{ unit }}
ez_restart_if_changed {{ unit }}
# Step the clock at once after a config change rather than slewing for hours.
if ez_live && [ "${EZ_LAYER_CHANGED:-0}" = 1 ]; then
    chronyc -a makestep >/dev/null || ez_log "chronyc makestep failed (no source reachable yet?)"
fi
