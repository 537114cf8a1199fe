#!/usr/bin/env bash
# Seed: sed -i "s#^SELINUX=.*#SELINUX=disabled#g" /etc/selinux/config; setenforce 0
if [ -f /etc/selinux/config ]; then
    ez_sed /etc/selinux/config 's#^SELINUX=.*#SELINUX=disabled#g'
fi

# setenforce only works on a booted system; the config takes effect at the next boot anyway.
if ez_live && command -v getenforce >/dev/null 2>&1 && [ "$(getenforce)" = Enforcing ]; then
    setenforce 0
    ez_changed "SELinux set to permissive until reboot"
fi
{% if os == "el9" %}

# Not in the seed: since RHEL 9, SELINUX=disabled in the config no longer disables SELinux in
# the kernel (it only stops loading the policy); the documented way is the selinux=0 boot argument.
if command -v grubby >/dev/null 2>&1; then
    case "$(grubby --info=DEFAULT)" in
        *selinux=0*) ;;
        *)
            grubby --update-kernel=ALL --args=selinux=0
            ez_changed "kernel argument selinux=0"
            ;;
    esac
fi
{% endif %}
