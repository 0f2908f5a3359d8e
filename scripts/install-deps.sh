#!/usr/bin/env bash
# System packages batchbridge and its tests need, on Debian (as root).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=(iproute2 iptables conntrack docker.io busybox-static curl util-linux procps)
missing=()
for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
