#!/usr/bin/env bash
# Seed: yum localinstall -y kernel-ml*; grub2-set-default 0 && grub2-mkconfig -o /etc/grub2.cfg
# Already installed: nothing to do (the boot default was set when it was installed).
if ! rpm -q kernel-ml-5.11.16-1.el7.elrepo >/dev/null 2>&1; then
    # ez_artifact checks each package's sha256 and its ELRepo signature (rpmkeys, pinned key).
    kernel=$(ez_artifact kernel-ml)
    devel=$(ez_artifact kernel-ml-devel)
    yum localinstall -y "$kernel" "$devel"
    # The newest kernel is entry 0.
    grub2-set-default 0
    # Not in the seed: on UEFI machines the config is /etc/grub2-efi.cfg, not /etc/grub2.cfg.
    cfg=/etc/grub2.cfg
    if [ -d /sys/firmware/efi ]; then
        cfg=/etc/grub2-efi.cfg
    fi
    grub2-mkconfig -o "$cfg"
    ez_changed "installed kernel-ml 5.11.16 as the default kernel (reboot to use it)"
fi
ez_log "default kernel: $(grubby --default-kernel)"

# Seed 000 reboots here. A kickstart %post is not live: the install's own reboot starts the new
# kernel. A live apply (cloud-init's first boot, or by hand) asks for one reboot, once per node
# (the marker): `apply` reboots at its end, and ezimg-join.service waits for it (it is
# conditioned on the flag, which lives in /run and so goes with the reboot).
want=5.11.16-1.el7.elrepo.x86_64
if ez_live && [ "$(uname -r)" != "$want" ]; then
    if ! ez_marker kernel-ml-reboot; then
        mkdir -p /run/ezimg
        printf 'kernel-ml %s is installed, %s is running\n' "$want" "$(uname -r)" >/run/ezimg/reboot-required
        ez_mark kernel-ml-reboot
        ez_log "a reboot into kernel-ml $want follows this apply"
    elif [ ! -e /run/ezimg/reboot-required ]; then
        ez_log "warning: rebooted once for kernel-ml $want, still running $(uname -r): check the boot default (grubby --default-kernel); no second reboot"
    fi
fi
