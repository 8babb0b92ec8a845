#!/usr/bin/env bash
# Installs the Debian 12 packages Crust needs to build and test, if any are
# missing. Non-interactive; needs root (or sudo). Safe to run repeatedly.
set -euo pipefail

packages=(
  g++ clang-14 libclang-rt-14-dev clang-format-14 clang-tidy-14
  meson ninja-build pkg-config cmake
  libboost1.81-dev libboost-json1.81-dev libssl-dev
  libminiupnpc-dev libnatpmp-dev doctest-dev libcli11-dev
  python3-dissononce python3-cryptography coturn stun-server
  iproute2 util-linux nftables conntrack iputils-ping
  miniupnpd miniupnpd-nftables miniupnpc natpmpc
  chromium doxygen gnuplot-nox
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# Node.js runs the libutp interop peer; the machine may bring its own.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# libutp for the µTP interop tests and benchmark: npm's utp-native ships a
# prebuilt binary (nothing is compiled; its install script is not needed).
utp_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/interop/utp"
if [ ! -d "$utp_dir/node_modules/utp-native" ]; then
  echo "installing: utp-native (npm, pinned in tests/interop/utp/package-lock.json)"
  (cd "$utp_dir" && npm ci --ignore-scripts --no-audit --no-fund >/dev/null)
fi
