#!/usr/bin/env bash
# Style and static checks, run by the test command:
#  - clang-format: every C++ file matches .clang-format;
#  - clang-tidy: the layers without coroutine-heavy code (base, secure,
#    config, events, the STUN codec and server, connection info and
#    punching), with .clang-tidy's checks as errors. The coroutine
#    layers are left out: Asio's headers make each run slow and noisy;
#  - tests/api_docs_check.py: every public async function's comment names
#    its errors and says how cancellation works;
#  - Doxygen builds the API reference (docs/Doxyfile) without a warning.
# Usage: tests/lint.sh SOURCE_ROOT BUILD_DIR
set -uo pipefail
src=$1
build=$2
cd "$src"
fmt=$(command -v clang-format-14 || command -v clang-format)
tidy=$(command -v clang-tidy-14 || command -v clang-tidy)
fail=0
files=$(git ls-files '*.cpp' '*.hpp' 2>/dev/null || find crust transports nat bootstrap tests bench examples -name '*.[ch]pp')
for f in $files; do
  if ! "$fmt" --style=file --dry-run --Werror "$f" 2>/dev/null; then
    echo "not formatted: $f (run: $fmt -i $f)"
    fail=1
  fi
done
for f in crust/base/*.cpp crust/secure/crypto.cpp crust/secure/noise.cpp crust/secure/frame.cpp \
         crust/secure/message.cpp crust/secure/identity.cpp crust/config.cpp crust/events.cpp \
         nat/stun.cpp nat/stun_server.cpp nat/connection_info.cpp nat/punch.cpp nat/pmp.cpp nat/relay.cpp \
         transports/rate_limit.cpp bootstrap/contact_record.cpp bootstrap/gossip.cpp; do
  # The compile commands are g++'s; clang does not know every GCC warning flag.
  if ! out=$("$tidy" -p "$build" --quiet --extra-arg=-Wno-unknown-warning-option "$f" 2>&1); then
    echo "$out" | grep -v "warnings generated" | head -40
    echo "clang-tidy: $f"
    fail=1
  fi
done
# Every public async function documents its errors and cancellation.
python3 tests/api_docs_check.py "$src" || fail=1
# The API reference builds cleanly (into a scratch directory, not build-docs).
docs_out=$(mktemp -d)
trap 'rm -rf "$docs_out"' EXIT
if ! { cat docs/Doxyfile; echo "OUTPUT_DIRECTORY = $docs_out"; echo "WARN_LOGFILE = $docs_out/warnings.txt"; } |
     doxygen - > /dev/null 2>&1 || [ -s "$docs_out/warnings.txt" ] || [ ! -f "$docs_out/html/index.html" ]; then
  echo "doxygen: the API reference has problems:"
  head -20 "$docs_out/warnings.txt" 2>/dev/null
  fail=1
fi
[ $fail -eq 0 ] && echo "lint: clean"
exit $fail
