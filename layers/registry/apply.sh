#!/usr/bin/env bash
# The site registry (issue 10) on el7/el9: the pinned distribution release binary with
# ezimg's unit (neither distribution packages it). Config and TLS files are already in place.
want=$(ez_pinned_sha distribution-registry)
tarball=$(ez_artifact distribution-registry)
if [ ! -x /usr/local/bin/registry ] || [ "$(cat /var/lib/ezimg/registry.sha256 2>/dev/null)" != "$want" ]; then
    tar -C /usr/local/bin -zxf "$tarball" registry
    chmod 0755 /usr/local/bin/registry
    ez_mkdir /var/lib/ezimg
    echo "$want" >/var/lib/ezimg/registry.sha256
    ez_changed "registry binary installed from $(basename "$tarball")"
fi
ez_mkdir /var/lib/ezimg-registry
ez_service_enable ezimg-registry.service
ez_restart_if_changed ezimg-registry.service
