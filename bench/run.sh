#!/usr/bin/env bash
# Builds in release mode and runs the benchmarks; writes
# bench/results/<date>.json and prints a Markdown table of ratios.
#   ./bench/run.sh [repetitions]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/.ci/install-deps.sh"
if [ ! -f build-release/build.ninja ]; then
  CXX=g++ meson setup build-release --buildtype=release -Dwerror=false -Dtests=false >/dev/null
fi
meson configure build-release -Dbench=true >/dev/null
ninja -C build-release bench/bench_throughput >/dev/null
mkdir -p bench/results
out="bench/results/$(date -u +%Y-%m-%d).json"
./build-release/bench/bench_throughput "${1:-3}" "$out"
echo
echo "written: $out"
