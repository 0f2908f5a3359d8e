#!/usr/bin/env bash
# System packages batchbridge and its tests need, on Debian (as root).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# gcc, libc6-dev: the CNI forwarder is compiled by `npm ci`; containernetworking-plugins: the
# reference CNI plugins (host-local for delegated IPAM, the chain batchbridge is compared with).
need=(iproute2 iptables conntrack docker.io busybox-static curl util-linux procps gcc libc6-dev containernetworking-plugins)
missing=()
for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
