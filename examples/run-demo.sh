#!/usr/bin/env bash
# Installs what is missing, builds crust-node, and runs the demo: a local
# network of nodes that connect and exchange encrypted messages.
#   ./examples/run-demo.sh [demo options, e.g. --nodes 8]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/.ci/install-deps.sh"
if [ ! -f build-release/build.ninja ]; then
  CXX=g++ meson setup build-release --buildtype=release -Dwerror=false -Dtests=false -Dbench=false >/dev/null
fi
ninja -C build-release examples/crust-node/crust-node >/dev/null
exec ./build-release/examples/crust-node/crust-node demo "$@"
