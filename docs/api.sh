#!/usr/bin/env bash
# Builds the API reference from the public headers with Doxygen (installs
# it with apt when missing, as root) into build-docs/html; prints where.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v doxygen > /dev/null; then
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends doxygen > /dev/null
fi
mkdir -p build-docs
doxygen docs/Doxyfile
echo "API reference: $(pwd)/build-docs/html/index.html"
if [ -s build-docs/warnings.txt ]; then
  echo "doxygen warnings ($(wc -l < build-docs/warnings.txt)), in build-docs/warnings.txt"
fi
