#!/usr/bin/env bash
# Seed: yum install <build deps>; ./configure --prefix=/ezops/service/nginx …; make && make install.
# The build happens once in the stage; the node only needs the libraries the binary links
# dynamically: --with-http_geoip_module (GeoIP) and --with-http_image_filter_module (gd). PCRE,
# OpenSSL and zlib are compiled in (--with-pcre/--with-openssl/--with-zlib).
{% if os == "debian12" %}
ez_pkg_install libgeoip1 libgd3
{% else %}
ez_pkg_install GeoIP gd
{% endif %}

prefix=/ezops/service/nginx
stamp=$prefix/.ezimg-stage.sha256
tarball=$(ez_artifact nginx-stage)
sum=$(sha256sum "$tarball" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
    ez_mkdir "$prefix"
    # Never overwrite the configuration the nginx-config layer renders.
    # --no-overwrite-dir: existing folders (/ezops …) keep their owner and mode.
    tar -C / -xzf "$tarball" --no-overwrite-dir \
        --exclude=conf/nginx.conf --exclude=conf/tcp --exclude=conf/vhost --exclude=conf/cert
    echo "$sum" > "$stamp"
    ez_changed "nginx stage $sum unpacked into $prefix"
    # A running nginx keeps the old binary until restarted.
    if ez_live && systemctl is-active --quiet nginx; then
        systemctl restart nginx
    fi
fi
