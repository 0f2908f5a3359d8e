#!/usr/bin/env bash
# System packages batchbridge and its tests need, on Debian (as root).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# containerd (1.6, with its CRI plugin), podman (4.3, CNI backend), runc, conmon and the reference
# CNI plugins (bridge, host-local, portmap, loopback in /usr/lib/cni) drive the CNI harness tests.
need=(iproute2 iptables conntrack docker.io busybox-static curl util-linux procps
      containerd runc podman conmon containernetworking-plugins)
missing=()
for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
