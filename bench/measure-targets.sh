#!/usr/bin/env bash
# The measurements of issue 4 section 3, in one go (≈ 6 min on 2 cores). Each run spawns its own
# plugin in a throwaway namespace. Results: targets-*.json in a new folder
# bench/results/<YYYY-MM-DD>-<commit>[-dirty][-N]/ (as `npm run bench` uses), or in --out DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
usage() {
  cat <<'USAGE'
Usage: bash bench/measure-targets.sh [--out DIR]

Runs the five target measurements of docs/performance.md ("Targets") with the load harness:
128 clients (+ lone requests, + kernel floor), 32 clients (+ kernel floor), --batch-max 1, an
open loop at half the closed-loop maximum, and --keep 10000. Writes targets-c128.json,
targets-c32.json, targets-bm1.json, targets-half-rate.json and targets-keep10k.json into a new
bench/results/<YYYY-MM-DD>-<commit>[-dirty][-N]/ folder, never over earlier results.

  --out DIR    write into DIR instead (replacing its targets-*.json)
  -h, --help   this text
USAGE
}
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --out) [ $# -ge 2 ] || { echo "measure-targets: --out needs a folder" >&2; exit 2; }; out=$2; shift 2 ;;
    *) echo "measure-targets: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
if [ -z "$out" ]; then
  commit=$(git rev-parse --short=7 HEAD 2>/dev/null || echo unknown)
  [ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || commit="$commit-dirty"
  base="bench/results/$(date -u +%F)-$commit"
  out=$base; n=2
  while compgen -G "$out/targets-*.json" >/dev/null; do out="$base-$n"; n=$((n + 1)); done
fi
mkdir -p "$out"
echo "results in $out" >&2
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
