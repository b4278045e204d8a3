#!/usr/bin/env bash
# `make test`: type-check, lint, then every vitest suite (the lab-backed ones bring their own libvirt lab up).
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
echo "== typecheck"; npx tsc -p tsconfig.json --noEmit || status=1
echo "== lint"; npx eslint . || status=1
echo "== format"; npx prettier --check . >/dev/null || { npx prettier --check . ; status=1; }
echo "== tests"; npx vitest run || status=1
exit $status
