#!/usr/bin/env bash
# Crust as its users take it, three ways, each building the README's
# example (examples/hello/hello.cpp) and running it (two nodes on
# loopback, one message):
#  1. `meson install` into a scratch root, then g++ with
#     `pkg-config --cflags --libs crust`;
#  2. CMake's find_package(crust) and target_link_libraries(crust::crust)
#     against that root;
#  3. a meson project with Crust as a subproject (subprojects/crust, a
#     link to this tree), built from scratch with only the consumer's
#     target asked for.
# Usage: consumers_test.sh SOURCE_ROOT BUILD_DIR [SANITIZER_FLAGS]
# The flags are the build's own (-fsanitize=undefined for the test
# command's g++ build), so the installed archive links.
set -uo pipefail
src=$(cd "${1:?usage: consumers_test.sh SOURCE_ROOT BUILD_DIR [FLAGS]}" && pwd)
build=$(cd "${2:?}" && pwd)
flags=${3:-}
work=$(mktemp -d /tmp/crust-consumers-XXXXXX)
trap 'rm -rf "$work"' EXIT
failures=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; failures=$((failures + 1)); }

# Runs a built example in its own folder (it writes b.key there).
run_hello() {
  local name=$1 exe=$2 dir="$work/run-$1"
  mkdir -p "$dir"
  local out
  if out=$(cd "$dir" && timeout 60 "$exe" 2>&1) && [[ "$out" == *"b got 2 bytes from "* ]]; then
    ok "$name: built and ran: $out"
  else
    bad "$name: the example did not deliver its message: $out"
  fi
}

# 1. Install, and pkg-config.
if ! meson install -C "$build" --destdir "$work/root" --no-rebuild --quiet > "$work/install.log" 2>&1; then
  bad "meson install: $(tail -5 "$work/install.log")"
  echo "$failures failed"
  exit 1
fi
prefix=$(meson introspect "$build" --buildoptions |
  python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"))')
libdir=$(meson introspect "$build" --buildoptions |
  python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "libdir"))')
root="$work/root$prefix"
for f in "$libdir/libcrust.a" "$libdir/pkgconfig/crust.pc" "$libdir/cmake/crust/crustConfig.cmake" \
         "$libdir/cmake/crust/crustConfigVersion.cmake" include/crust/service.hpp include/crust/base/version.hpp; do
  [ -f "$root/$f" ] || bad "not installed: $f"
done
# Every header the installed ones include (with quotes) is installed too.
missing=$(cd "$root/include" && grep -rhoE '^#include "[^"]+"' . | sed 's/#include "\(.*\)"/\1/' | sort -u |
  while read -r h; do [ -f "$h" ] || echo "$h"; done)
[ -z "$missing" ] && ok "every included header is installed" || bad "headers included but not installed: $missing"
export PKG_CONFIG_PATH="$root/$libdir/pkgconfig"
pc=(pkg-config --define-variable=prefix="$root")  # the scratch root, not /usr/local
if cflags=$("${pc[@]}" --cflags crust) && libs=$("${pc[@]}" --libs crust); then
  echo "pkg-config --cflags --libs crust: $cflags $libs"
  # shellcheck disable=SC2086
  if g++ $flags $cflags "$src/examples/hello/hello.cpp" -o "$work/hello-pc" $libs $flags > "$work/pc.log" 2>&1; then
    run_hello pkg-config "$work/hello-pc"
  else
    bad "pkg-config: the example did not build: $(tail -20 "$work/pc.log")"
  fi
else
  bad "pkg-config does not know crust"
fi

# 2. CMake.
if cmake -S "$src/tests/packaging/cmake" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$root" \
     -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" -DCMAKE_BUILD_TYPE=Release \
     -DCRUST_EXAMPLE="$src/examples/hello/hello.cpp" > "$work/cmake.log" 2>&1 &&
   cmake --build "$work/cmake" >> "$work/cmake.log" 2>&1; then
  run_hello cmake "$work/cmake/hello"
else
  bad "CMake: $(tail -20 "$work/cmake.log")"
fi

# 3. A meson subproject (SKIP_SUBPROJECT=1 leaves it out, when working
#    on the other two). Its build is plain (no optimisation) to keep
#    the library's compile short; only the consumer's target is built.
unset PKG_CONFIG_PATH  # the subproject, not the scratch install
mkdir -p "$work/sub/subprojects"
cp "$src/tests/packaging/meson/meson.build" "$src/examples/hello/hello.cpp" "$work/sub/"
ln -s "$src" "$work/sub/subprojects/crust"
if [ -n "${SKIP_SUBPROJECT:-}" ]; then
  echo "skipped: the meson subproject (SKIP_SUBPROJECT)"
elif meson setup "$work/sub/build" "$work/sub" --buildtype=plain --force-fallback-for=crust \
     > "$work/sub.log" 2>&1 &&
   ninja -C "$work/sub/build" hello >> "$work/sub.log" 2>&1; then
  run_hello "meson subproject" "$work/sub/build/hello"
else
  bad "meson subproject: $(tail -20 "$work/sub.log")"
fi

echo "$failures failed"
[ $failures -eq 0 ]
