#!/usr/bin/env bash
# For nodes without the keepalived stage (params.keepalived_source = "distro"): el7 ships
# keepalived 1.3.5, el9 2.2.x, Debian 12 2.2.7; every directive keepalived-config uses exists
# in all three. keepalived-config's unit (same name as the package's) runs /usr/sbin/keepalived
# with the config under /ezops/service/keepalived.
ez_pkg_install keepalived
