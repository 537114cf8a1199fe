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

# Never overwrite the configuration the nginx-config layer renders.
ez_unpack_stage nginx-stage /ezops/service/nginx \
    conf/nginx.conf conf/tcp conf/vhost conf/cert
# A running nginx keeps the old binary until restarted.
if [ "$EZ_STAGE_CHANGED" = 1 ] && ez_live && systemctl is-active --quiet nginx; then
    systemctl restart nginx
fi
