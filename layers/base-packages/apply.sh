#!/usr/bin/env bash
# Seed: yum -y install <list>; yum -y update.
# chrony is added to the seed's list here: the chrony layer installs its config file before its
# own scripts run, and a package installed over an existing config leaves a .rpmnew or asks dpkg.
{% if os == "el7" %}
# EPEL (jq, tcping, ack, bash-completion-extras) is one of the yum-mirror layer's repositories.
# The seed's list as is (its duplicates removed).
ez_pkg_install gcc glibc gcc-c++ make cmake net-tools screen vim lrzsz tree dos2unix lsof \
    tcpdump bash-completion wget ntp setuptool openssl openssl-devel bind-utils traceroute \
    bash-completion-extras unzip bzip2 bzip2-devel libevent libevent-devel \
    expect pcre pcre-devel zlib zlib-devel jq psmisc yum-utils device-mapper-persistent-data \
    lvm2 git bridge-utils container-selinux binutils-devel \
    ncurses ncurses-devel elfutils-libelf-devel ack zip socat glib2 glib2-devel tcping \
    chrony
{% elif os == "el9" %}
# EPEL and CRB (EPEL needs it; binutils-devel lives there too) are among the yum-mirror
# layer's repositories.
ez_pkg_install dnf-plugins-core
# Left out of the seed's list, no el9 package: ntp (chrony replaces it, RHEL 8+),
# setuptool, bash-completion-extras (merged into bash-completion), tcping (not in EPEL 9),
# bridge-utils (dropped in RHEL 9: `ip link`/`bridge` from iproute do the same).
ez_pkg_install gcc glibc gcc-c++ make cmake net-tools screen vim-enhanced lrzsz tree dos2unix lsof \
    tcpdump bash-completion wget openssl openssl-devel bind-utils traceroute \
    unzip bzip2 bzip2-devel libevent libevent-devel \
    expect pcre pcre-devel zlib zlib-devel jq psmisc yum-utils device-mapper-persistent-data \
    lvm2 git container-selinux binutils-devel \
    ncurses ncurses-devel elfutils-libelf-devel ack zip socat glib2 glib2-devel \
    chrony
{% else %}
# Debian names for the seed's list. No Debian package for: ntp (ntpsec conflicts with chrony,
# which the seed uses instead), setuptool, bash-completion-extras, yum-utils,
# container-selinux (no SELinux), tcping (tcptraceroute covers "is the port open").
# glibc -> libc6 (always installed), device-mapper-persistent-data -> thin-provisioning-tools.
ez_pkg_install gcc libc6 g++ make cmake net-tools screen vim lrzsz tree dos2unix lsof \
    tcpdump bash-completion wget openssl libssl-dev bind9-dnsutils traceroute \
    unzip bzip2 libbz2-dev libevent-2.1-7 libevent-dev \
    expect libpcre3 libpcre3-dev zlib1g zlib1g-dev jq psmisc thin-provisioning-tools \
    lvm2 git bridge-utils binutils-dev \
    libncurses6 libncurses-dev libelf-dev ack zip socat libglib2.0-0 libglib2.0-dev tcptraceroute \
    chrony
{% endif %}

# The seed upgrades the whole system once, at install time; later runs must not (reproducible
# images, no surprise upgrades on re-apply), hence the marker.
if ! ez_marker base-packages-upgraded; then
{% if os == "el7" %}
    yum -y update
{% elif os == "el9" %}
    dnf -y upgrade
{% else %}
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get -y -o Dpkg::Options::=--force-confold upgrade
{% endif %}
    ez_mark base-packages-upgraded
    ez_changed "full system upgrade"
fi
