#!/usr/bin/env bash
# The site registry (issue 10): Debian's docker-registry package, or on el7/el9 the pinned
# distribution release binary with ezimg's unit. Config and TLS files are already in place.
{% if os == 'debian12' %}
ez_pkg_install docker-registry
# The drop-in is a plain file: make systemd read it before the service starts.
if ez_live; then systemctl daemon-reload; fi
ez_service_enable docker-registry.service
ez_restart_if_changed docker-registry.service
{% else %}
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
{% endif %}
