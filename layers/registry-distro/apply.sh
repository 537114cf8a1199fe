#!/usr/bin/env bash
# The site registry (issue 10) on debian12: the distribution's docker-registry package.
ez_pkg_install docker-registry
# The drop-in is a plain file: make systemd read it before the service starts.
if ez_live; then systemctl daemon-reload; fi
ez_service_enable docker-registry.service
ez_restart_if_changed docker-registry.service
