#!/usr/bin/env bash
# System packages batchbridge and its tests need, on Debian 12 (as root). Idempotent: installs only
# what is missing, and prints nothing unless it installs something or fails.
#   runtime:  iproute2 iptables conntrack (the kernel tools the plugin runs), procps, util-linux
#   build:    build-essential python3 (node-gyp compiles better-sqlite3 when no prebuilt binary
#             can be fetched for this Node/architecture)
#   tests:    docker.io busybox-static curl (end-to-end tier), systemd (systemd-analyze verifies
#             the service unit); containerd (1.6, with its CRI plugin), podman (4.3, CNI
#             backend), runc, conmon and the reference CNI plugins (bridge, host-local, portmap,
#             loopback in /usr/lib/cni) for the CNI tests; prometheus (Debian's 2.42, which also
#             ships promtool) for the metrics test
# Node.js itself is not installed here: Debian 12's nodejs is 18 and batchbridge needs 20 (see
# README.md, "Prerequisites").
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# gcc and libc6-dev: the CNI forwarder (src/cni/forwarder) is compiled by `npm ci`.
need=(iproute2 iptables conntrack procps util-linux build-essential gcc libc6-dev python3 docker.io busybox-static curl systemd
      containerd runc podman conmon containernetworking-plugins prometheus)
missing=()
for p in "${need[@]}"; do
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}" >&2
log=$(mktemp /tmp/install-deps.XXXXXX)
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  rm -f "$log"
  exit 1
fi
rm -f "$log"
# Debian starts the prometheus service it just installed (on a host running systemd): the tests
# run their own, in namespaces of their own, and want nothing listening on the host.
if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
  systemctl disable --now prometheus.service >/dev/null 2>&1 || true
fi
