#!/usr/bin/env bash
# Seed 004: yum -y install haproxy keepalived (keepalived: keepalived / keepalived-distro layers).
ez_pkg_install haproxy
