#!/usr/bin/env bash
# Enabled here, not by [[unit]] enable: that would also start it, and starting a oneshot waits for
# the whole join. Not live (kickstart %post, image bake): enabled only; it runs at first boot.
if ! systemctl is-enabled --quiet ezimg-join.service 2>/dev/null; then
    systemctl enable ezimg-join.service >&2 2>/dev/null || systemctl enable ezimg-join.service >&2
    ez_changed "enabled ezimg-join.service"
fi

# Live (cloud-init's apply at first boot, or a later apply): at boot the unit's condition was false
# (this node's kubeadm configuration only arrives with this apply), so start it now, in the
# background. A join in progress is left alone; a failed one is started again.
# Not while a reboot into a new kernel is pending (kernel-ml): the unit starts after it.
if ez_live && [ -e /run/ezimg/reboot-required ]; then
    ez_log "the join starts after the reboot into the new kernel ($(cat /run/ezimg/reboot-required))"
elif ez_live && [ ! -e /var/lib/ezimg/join.done ]; then
    state=$(systemctl is-active ezimg-join.service 2>/dev/null || true)
    case "$state" in
        active | activating | reloading) ;;
        *)
            systemctl start --no-block ezimg-join.service
            ez_changed "started ezimg-join.service in the background (journalctl -u ezimg-join; /var/lib/ezimg/join.json)"
            ;;
    esac
fi
