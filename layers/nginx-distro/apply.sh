#!/usr/bin/env bash
# For nodes without the nginx stage (params.nginx_source = "distro", e.g. Debian VM tests).
# The distribution's nginx lacks the seed's third-party modules (ngx_healthcheck_module,
# ngx_http_status_code_counter): nginx-config leaves out their directives (`check`,
# `show_status_code_count`, `healthcheck_status`), so upstream health is passive only.
# stream is a dynamic module here; nginx-config loads it.
{% if os == "debian12" %}
ez_pkg_install nginx libnginx-mod-stream
{% else %}
ez_pkg_install nginx nginx-mod-stream
{% endif %}

# Same prefix as the stage build: nginx-config's files and unit do not depend on the source.
prefix=/ezops/service/nginx
ez_mkdir "$prefix/conf" "$prefix/logs"
# The package's module snippets load `modules/…` relative to the prefix (Debian) or by
# absolute path (el): link the prefix's modules folder to the package's.
{% set modules = "/usr/lib/nginx/modules" if os == "debian12" else "/usr/lib64/nginx/modules" %}
for pair in /etc/nginx/mime.types:"$prefix/conf/mime.types" {{ modules }}:"$prefix/modules"; do
    target=${pair%%:*}
    link=${pair#*:}
    if [ "$(readlink "$link")" != "$target" ]; then
        ln -sfn "$target" "$link"
        ez_changed "linked $link"
    fi
done
{% if os == "debian12" %}

# Debian starts the package's own nginx (default site on :80, /run/nginx.pid) on install;
# stop it so nginx-config's unit can start ours on the same ports.
if ez_live && [ -s /run/nginx.pid ]; then
    systemctl stop nginx
    ez_changed "stopped the package's default nginx"
fi
{% endif %}
