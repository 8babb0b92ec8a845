#!/usr/bin/env bash
# Installs the Debian 12 packages Crust needs to build and test, if any are
# missing. Non-interactive; needs root (or sudo). Safe to run repeatedly.
set -euo pipefail

packages=(
  g++ clang-14 libclang-rt-14-dev clang-format-14 clang-tidy-14
  meson ninja-build pkg-config cmake
  libboost1.81-dev libboost-json1.81-dev libssl-dev
  libminiupnpc-dev libnatpmp-dev doctest-dev libcli11-dev
  python3-dissononce python3-cryptography
  iproute2 util-linux
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
