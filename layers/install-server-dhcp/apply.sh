#!/usr/bin/env bash
# dnsmasq for the install server: the binary (no distribution service) and ezimg's unit, which
# starts with ezimg-serve once a build output is in /srv/ezimg/out.
ez_pkg_install {{ 'dnsmasq-base' if os == 'debian12' else 'dnsmasq' }}
ez_service_enable ezimg-dnsmasq.service
ez_restart_if_changed ezimg-dnsmasq.service
