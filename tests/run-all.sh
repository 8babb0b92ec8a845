#!/usr/bin/env bash
# Builds Crust and runs every test. Installs missing Debian packages first
# (as root, non-interactively). Ends with one line: "N passed, N failed".
#
#   ./tests/run-all.sh            everything
#   SKIP_CLANG=1 ./tests/run-all.sh   skip the clang++-14 (ASan) build
#   SKIP_TSAN=1                       skip the ThreadSanitizer build
#   SKIP_FUZZ=1 / FUZZ_SECONDS=N      skip the fuzz runs / change their length
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

"$root/.ci/install-deps.sh" || { echo "dependency installation failed"; echo "0 passed, 1 failed"; exit 1; }

logs=()
status=0
step() { echo; echo "=== $*"; }

# 1. GCC build with UndefinedBehaviorSanitizer: every test, and the lint.
step "build (g++, warning_level=3, werror, UBSan)"
if [ ! -f build/build.ninja ]; then
  CXX=g++ meson setup build --buildtype=debugoptimized -Db_sanitize=undefined >/dev/null || status=1
fi
if ninja -C build; then
  step "tests (g++ build)"
  meson test -C build --print-errorlogs --num-processes 2 || status=1
  logs+=(build/meson-logs/testlog.json)
else
  status=1
  echo "g++ build failed"
fi

# 2. Clang build with AddressSanitizer + LeakSanitizer: must also be
#    warning-free, and runs every suite again. (Clang 14 cannot compile
#    coroutines with UBSan, llvm#49689, hence UBSan on the GCC side.)
if [ -z "${SKIP_CLANG:-}" ]; then
  step "build (clang++-14, warning_level=3, werror, ASan)"
  if [ ! -f build-clang/build.ninja ]; then
    CXX=clang++-14 meson setup build-clang --buildtype=debugoptimized -Dbench=false \
      -Db_sanitize=address -Db_lundef=false >/dev/null || status=1
  fi
  if ninja -C build-clang; then
    step "tests (clang++ ASan build)"
    meson test -C build-clang --no-suite lint --no-suite packaging --print-errorlogs \
      --num-processes 2 || status=1
    logs+=(build-clang/meson-logs/testlog.json)
  else
    status=1
    echo "clang++ build failed"
  fi
fi

# 3. ThreadSanitizer: the multi-threaded test (nodes on strands of a
#    4-thread io_context) in a g++ build of its own, which builds only the
#    library and that test.
if [ -z "${SKIP_TSAN:-}" ]; then
  step "build (g++, ThreadSanitizer: the library and the threads test)"
  if [ ! -f build-tsan/build.ninja ]; then
    # Warnings are the other builds' business: GCC's instrumentation adds
    # false maybe-uninitialized ones, and -Wtsan flags Asio's fences.
    CXX=g++ meson setup build-tsan --buildtype=debugoptimized -Dbench=false \
      -Db_sanitize=thread -Dwerror=false "-Dcpp_args=['-Wno-tsan','-Wno-maybe-uninitialized']" \
      >/dev/null || status=1
  fi
  if ninja -C build-tsan tests/test_threads; then
    step "tests (ThreadSanitizer build)"
    rm -f build-tsan/meson-logs/testlog.json
    meson test -C build-tsan --no-rebuild --print-errorlogs threads || status=1
    logs+=(build-tsan/meson-logs/testlog.json)
  else
    status=1
    echo "ThreadSanitizer build failed"
  fi
fi

# 4. Fuzzing: each libFuzzer harness for a bounded time (FUZZ_SECONDS, 30 by
#    default) under ASan+UBSan; tests/fuzz/run.sh runs them longer.
if [ -z "${SKIP_FUZZ:-}" ]; then
  step "fuzz (clang++-14, libFuzzer, ASan+UBSan, ${FUZZ_SECONDS:-30} s each)"
  if [ ! -f build-fuzz/build.ninja ]; then
    CXX=clang++-14 meson setup build-fuzz -Dfuzzing=true -Dtests=false -Dbench=false >/dev/null || status=1
  fi
  meson configure build-fuzz -Dfuzz_seconds="${FUZZ_SECONDS:-30}" >/dev/null || status=1
  rm -f build-fuzz/meson-logs/testlog.json
  # Only the harnesses: the rest of that build is not needed here.
  harnesses=()
  for f in tests/fuzz/fuzz_*.cpp; do harnesses+=("tests/fuzz/$(basename "$f" .cpp)"); done
  if ninja -C build-fuzz "${harnesses[@]}"; then
    meson test -C build-fuzz --no-rebuild --suite fuzz --print-errorlogs -v 2>&1 |
      grep -E "runs in|FAILED|ERROR|Ok:|Fail:" || true
  fi
  [ -f build-fuzz/meson-logs/testlog.json ] && logs+=(build-fuzz/meson-logs/testlog.json) || status=1
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
