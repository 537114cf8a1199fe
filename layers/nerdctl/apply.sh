#!/usr/bin/env bash
# Seed: tar -C /usr/local -zxf nerdctl-full-1.3.1-linux-amd64.tar.gz
# The version must match the nerdctl-full entry of artifacts.lock.
want=1.3.1
have=$(/usr/local/bin/nerdctl --version 2>/dev/null || true)
if [ "$have" != "nerdctl version $want" ]; then
    tarball=$(ez_artifact nerdctl-full)
    tar -C /usr/local -zxf "$tarball"
    ez_changed "nerdctl-full $want unpacked into /usr/local (was: ${have:-none})"
fi
