#!/usr/bin/env bash
# The whole test suite: unit tests, kernel tests in throwaway network namespaces, and end-to-end
# tests with a real dockerd. Needs root (namespaces, dockerd) and the system packages that
# scripts/install-deps.sh installs. Usage: scripts/test.sh [unit|netns|e2e]...
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "scripts/test.sh: run as root (the kernel and dockerd tests need it)" >&2; exit 1; fi
npx --no-install tsc -p tsconfig.json || exit 1
sh scripts/build-cni.sh || exit 1

tiers=("$@"); [ ${#tiers[@]} -eq 0 ] && tiers=(unit netns e2e)
out=$(mktemp -d /tmp/bbtest.XXXXXX)
pass=0; fail=0; rc=0
for tier in "${tiers[@]}"; do
  case "$tier" in
    # Unit tests touch no kernel state; many files run side by side.
    unit)  cmd=(node --test --test-concurrency=2) ;;
    # Kernel tests: the runner itself lives in a fresh network namespace that dies with it, so
    # nothing can leak into the root namespace; files run one at a time inside it.
    netns) cmd=(unshare --net node --test --test-concurrency=1) ;;
    # dockerd tests create their own named namespaces; one at a time (2 cores).
    e2e)   cmd=(node --test --test-concurrency=1) ;;
    *) echo "unknown tier $tier" >&2; exit 2 ;;
  esac
  [ -d "dist/test/$tier" ] || continue
  echo "=== $tier tests"
  "${cmd[@]}" --test-reporter=spec --test-reporter-destination=stdout \
      --test-reporter=tap --test-reporter-destination="$out/$tier.tap" "dist/test/$tier/" || rc=1
  p=$(grep -E '^# pass ' "$out/$tier.tap" | tail -1 | awk '{print $3}'); f=$(grep -E '^# fail ' "$out/$tier.tap" | tail -1 | awk '{print $3}')
  pass=$((pass + ${p:-0})); fail=$((fail + ${f:-0}))
done
rm -rf "$out"
echo
echo "all tiers: $pass passed, $fail failed"
[ "$pass" -gt 0 ] || rc=1
exit $rc
