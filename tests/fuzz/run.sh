#!/usr/bin/env bash
# Builds the fuzzing harnesses (clang-14, ASan+UBSan+libFuzzer) and runs
# each for SECONDS (default 600): the long run, apart from the test command.
#   tests/fuzz/run.sh [SECONDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
"$root/.ci/install-deps.sh"
if [ ! -f build-fuzz/build.ninja ]; then
  CXX=clang++-14 meson setup build-fuzz -Dfuzzing=true -Dtests=false -Dbench=false >/dev/null
fi
meson configure build-fuzz -Dfuzz_seconds="${1:-600}" >/dev/null
harnesses=()
for f in tests/fuzz/fuzz_*.cpp; do harnesses+=("tests/fuzz/$(basename "$f" .cpp)"); done
ninja -C build-fuzz "${harnesses[@]}"
meson test -C build-fuzz --no-rebuild --suite fuzz --print-errorlogs -v
