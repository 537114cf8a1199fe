#!/usr/bin/env bash
# Seed: rpm -e libseccomp-2.3.1-4.el7.x86_64 --nodeps; rpm -ivh libseccomp-2.5.1-1.el8.x86_64.rpm
# Deviation: `rpm -Uvh` replaces 2.3.1 in one transaction; the seed's erase-then-install leaves
# the node without libseccomp (which systemd links) if the install fails.
if ! rpm -q libseccomp-2.5.1-1.el8 >/dev/null 2>&1; then
    # ez_artifact checks its sha256 and its CentOS signature (rpmkeys, pinned key).
    rpm_file=$(ez_artifact libseccomp-el8)
    rpm -Uvh "$rpm_file"
    ez_changed "libseccomp 2.5.1-1.el8 installed"
fi
