#!/usr/bin/env bash
# Builds Crust and runs every test. Installs missing Debian packages first
# (as root, non-interactively). Ends with one line: "N passed, N failed".
#
#   ./tests/run-all.sh            everything
#   SKIP_CLANG=1 ./tests/run-all.sh   skip the clang++-14 build
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

"$root/.ci/install-deps.sh" || { echo "dependency installation failed"; echo "0 passed, 1 failed"; exit 1; }

logs=()
status=0
step() { echo; echo "=== $*"; }

# 1. GCC build: the library, tools, examples, every test.
step "build (g++, warning_level=3, werror)"
if [ ! -f build/build.ninja ]; then
  CXX=g++ meson setup build --buildtype=debugoptimized >/dev/null || status=1
fi
if ninja -C build; then
  step "tests (g++ build)"
  meson test -C build --print-errorlogs --num-processes 2 || status=1
  logs+=(build/meson-logs/testlog.json)
else
  status=1
  echo "g++ build failed"
fi

# 2. Clang build: must also be warning-free; runs the unit suite.
if [ -z "${SKIP_CLANG:-}" ]; then
  step "build (clang++-14, warning_level=3, werror)"
  if [ ! -f build-clang/build.ninja ]; then
    CXX=clang++-14 meson setup build-clang --buildtype=debugoptimized -Dbench=false >/dev/null || status=1
  fi
  if ninja -C build-clang; then
    step "unit tests (clang++ build)"
    meson test -C build-clang --suite unit --print-errorlogs --num-processes 2 || status=1
    logs+=(build-clang/meson-logs/testlog.json)
  else
    status=1
    echo "clang++ build failed"
  fi
fi

step "summary"
if [ ${#logs[@]} -eq 0 ]; then
  echo "0 passed, 1 failed"
  exit 1
fi
line=$(python3 "$root/.ci/summarize.py" "${logs[@]}")
# A build failure is a failure even if every test that ran passed.
if [ $status -ne 0 ] && [[ "$line" == *", 0 failed" ]]; then
  line="${line%, 0 failed}, 1 failed"
fi
echo "$line"
[[ "$line" == *", 0 failed" ]] && [ $status -eq 0 ]
