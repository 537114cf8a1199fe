#!/usr/bin/env bash
{% set nginx = "/ezops/service/nginx/sbin/nginx" if params.nginx_source == "stage" else "/usr/sbin/nginx -p /ezops/service/nginx/ -c /ezops/service/nginx/conf/nginx.conf" %}
# Seed: mkdir /ezops/service/nginx/conf/{vhost,tcp,cert}; nginx -t; nginx
ez_mkdir /ezops/service/nginx/conf/vhost /ezops/service/nginx/conf/tcp /ezops/service/nginx/conf/cert \
    /ezops/service/nginx/logs
{{ nginx }} -t -q
ez_service_enable nginx
# A config change is picked up by a graceful reload: proxied API connections survive.
if ez_live && [ "${EZ_LAYER_CHANGED:-0}" = 1 ] && systemctl is-active --quiet nginx; then
    systemctl reload nginx
fi
