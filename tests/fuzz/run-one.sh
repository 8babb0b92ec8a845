#!/usr/bin/env bash
# Runs one libFuzzer harness for a bounded time on a scratch copy of its
# committed seed corpus (which stays small and unchanged). Crash inputs are
# kept under ARTIFACTS for reproduction: `HARNESS ARTIFACTS/crash-...`.
# Usage: run-one.sh HARNESS CORPUS SECONDS MAX_LEN ARTIFACTS
set -uo pipefail
exe=$1 corpus=$2 seconds=$3 max_len=$4 artifacts=$5
name=$(basename "$exe")
work=$(mktemp -d)
log=$(mktemp)
trap 'rm -rf "$work" "$log"' EXIT
mkdir -p "$artifacts"
cp -r "$corpus/." "$work/" 2>/dev/null || true
"$exe" -max_total_time="$seconds" -max_len="$max_len" -rss_limit_mb=2048 -timeout=10 \
  -print_final_stats=1 -artifact_prefix="$artifacts/$name-" "$work" >"$log" 2>&1
rc=$?
runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
peak=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$log" | grep -o '[0-9]*$')
if [ $rc -ne 0 ]; then
  tail -60 "$log"
  echo "$name: FAILED (exit $rc) after ${runs:-?} runs; inputs in $artifacts"
  exit 1
fi
echo "$name: ${runs:-0} runs in ${seconds} s ($(( ${runs:-0} / (seconds > 0 ? seconds : 1) )) exec/s), peak RSS ${peak:-?} MB, corpus $(ls "$work" | wc -l) inputs"
