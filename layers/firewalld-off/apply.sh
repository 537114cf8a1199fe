#!/usr/bin/env bash
# Seed: systemctl stop firewalld; systemctl disable firewalld.
# ez_service_disable does nothing when firewalld is not installed (minimal installs).
ez_service_disable firewalld
