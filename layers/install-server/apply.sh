#!/usr/bin/env bash
# The install server: a system user for ezimg-serve.service and the folders it serves from.
# The binary, cluster file, lock and unit are already in place.
if ! getent passwd ezimg-serve >/dev/null; then
    useradd --system --user-group --home-dir /srv/ezimg --no-create-home \
        --shell {{ '/usr/sbin/nologin' if os == 'debian12' else '/sbin/nologin' }} ezimg-serve
    ez_changed "user ezimg-serve created"
fi
ez_mkdir /srv/ezimg/out /srv/ezimg/cache
# The folders only: the operator's copy of the build output is given to the user with it
# (`chown -R ezimg-serve: /srv/ezimg`, see layers/README.md). 0755: dnsmasq's TFTP reads
# out/pxe; what is secret there (kickstarts, seeds) is 0600 itself.
for d in /srv/ezimg /srv/ezimg/out /srv/ezimg/cache; do
    if [ "$(stat -c %U:%a "$d")" != "ezimg-serve:755" ]; then
        chown ezimg-serve:ezimg-serve "$d"
        chmod 0755 "$d"
        ez_changed "$d owned by ezimg-serve"
    fi
done
ez_service_enable ezimg-serve.service
ez_restart_if_changed ezimg-serve.service
