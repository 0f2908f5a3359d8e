#!/bin/sh
# Compiles the CNI forwarder (src/cni/forwarder/batchbridge-cni.c) into dist/cni/batchbridge-cni.
# Run by `npm ci` / `npm run build` (package.json) after tsc. libc only; statically linked, so
# the runtime's exec of it skips the dynamic loader (docs/cni.md, "Why a C forwarder").
set -eu
cd "$(dirname "$0")/.."
mkdir -p dist/cni
${CC:-cc} -std=c11 -O2 -Wall -Wextra -Werror -static \
  -o dist/cni/batchbridge-cni.tmp src/cni/forwarder/batchbridge-cni.c
mv -f dist/cni/batchbridge-cni.tmp dist/cni/batchbridge-cni
