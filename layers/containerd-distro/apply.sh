#!/usr/bin/env bash
# Instead of the seed's nerdctl-full tarball: the distribution's containerd and runc. The
# containerd layer then writes the seed's config and starts the service as with nerdctl-full.
ez_pkg_install containerd runc
