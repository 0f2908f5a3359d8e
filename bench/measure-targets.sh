#!/usr/bin/env bash
# The measurements of issue 4 section 3, in one go (≈ 5 min on 2 cores). Each run spawns its own
# plugin in a throwaway namespace; results go to bench/results/targets-*.json.
#   bash bench/measure-targets.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/results
mkdir -p "$out"
load() { unshare --net node dist/scripts/load/main.js --spawn --json --networks 16 --ports 1 "$@"; }
rate() { node -e "process.stdout.write(String(JSON.parse(require('fs').readFileSync('$1','utf8')).lifecyclesPerSec))"; }

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "1/5 closed loop, 128 clients (+ lone requests, + kernel floor)" >&2
load --concurrency 128 --lifecycles 4000 --lone 10 --floor 4096 > "$out/targets-c128.json" || true
echo "2/5 closed loop, 32 clients (+ kernel floor)" >&2
load --concurrency 32 --lifecycles 2000 --floor 4096 > "$out/targets-c32.json" || true
echo "3/5 --batch-max 1, 128 clients" >&2
load --concurrency 128 --lifecycles 400 --batch-max 1 > "$out/targets-bm1.json" || true
max=$(rate "$out/targets-c128.json")
half=$(node -e "process.stdout.write(String(Math.max(1, Math.round($max / 2))))")
echo "4/5 open loop at half the closed-loop maximum ($half/s of $max/s), 20 s" >&2
load --concurrency 256 --rate "$half" --duration 20 > "$out/targets-half-rate.json" || true
echo "5/5 --keep 10000, 128 clients (+ kernel floor with the same 10000 veths)" >&2
load --concurrency 128 --lifecycles 4000 --keep 10000 --timeout 900 --floor 2048 > "$out/targets-keep10k.json" || true
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
