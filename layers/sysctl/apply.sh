#!/usr/bin/env bash
# The seed only writes the file and reboots; apply it at once on a booted node. -e: keys this
# kernel lacks (see user.conf) are not errors.
if ez_live && [ "${EZ_LAYER_CHANGED:-0}" = 1 ]; then
    sysctl -e --system >/dev/null
fi
