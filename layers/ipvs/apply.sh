#!/usr/bin/env bash
# Seed: yum -y install ipvsadm ipset sysstat conntrack libseccomp; modprobe ...;
# systemctl enable --now systemd-modules-load
{% if os == "debian12" %}
ez_pkg_install ipvsadm ipset sysstat conntrack libseccomp2
{% else %}
# conntrack is a virtual name on el; conntrack-tools is the package that provides it.
ez_pkg_install ipvsadm ipset sysstat conntrack-tools libseccomp
{% endif %}

# The seed loads these now; the rest of the list loads at boot.
ez_modprobe ip_vs ip_vs_rr ip_vs_wrr ip_vs_sh nf_conntrack

# systemd-modules-load is a static unit (no [Install]): "enable" does nothing, so load the new
# list by restarting it when the file changed. As the seed says, a module this kernel lacks makes
# it report an error that does not matter: log it, do not fail the layer.
if ez_live && [ "${EZ_LAYER_CHANGED:-0}" = 1 ]; then
    systemctl restart systemd-modules-load ||
        ez_log "some modules did not load: journalctl -u systemd-modules-load"
fi
