#!/usr/bin/env bash
# `make test`: type-check, lint, then every vitest suite. The unit and cluster projects in one vitest process
# and the lab project (real libvirt daemons and QEMU guests, one file at a time) in another run side by side —
# one vitest runs a single-worker project only after all the others — and their JSON reports are joined in
# .test-results.json. The lab process, the longer of the two, starts first: bringing its lab up overlaps the
# type-check and lint.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
rm -f .test-results.json .test-results-unit.json .test-results-lab.json
echo "== lab tests start in the background (their output follows the unit tests')"
DROVER_TEST_RESULTS=.test-results-lab.json npx vitest run --project lab >.test-lab.log 2>&1 &
lab=$!
trap 'kill "$lab" 2>/dev/null' INT TERM

echo "== typecheck"; npx tsc -p tsconfig.json --noEmit || status=1
echo "== lint"; npx eslint . || status=1
echo "== format"; npx prettier --check . >/dev/null || { npx prettier --check . ; status=1; }

echo "== tests"
DROVER_TEST_RESULTS=.test-results-unit.json npx vitest run --project unit --project cluster || status=1
wait "$lab" || status=1
echo "== lab tests"; cat .test-lab.log
npx tsx test/support/merge-test-results.ts .test-results.json .test-results-unit.json .test-results-lab.json
exit $status
