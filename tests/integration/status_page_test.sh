#!/usr/bin/env bash
# The status page in a real browser: Debian's chromium, headless, loads
# the page of a `crust-node run --status` with one peer connected, lets
# its script fetch /status, and the page must list that peer; a
# screenshot is kept as OUT_DIR/status_page.png. Everything on loopback;
# every process bounded by `timeout` and stopped by PID.
# Usage: status_page_test.sh CRUST_NODE_BINARY OUT_DIR
set -uo pipefail
NODE=${1:?usage: status_page_test.sh CRUST_NODE_BINARY OUT_DIR}
OUT=${2:?}
browser=$(command -v chromium || true)
if [ -z "$browser" ]; then
  echo "FAIL: chromium is not installed (.ci/install-deps.sh installs it)"
  exit 1
fi
work=$(mktemp -d /tmp/crust-status-page-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  sleep 0.3
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=tests/support/wait_for.sh
. "$(dirname "$0")/../support/wait_for.sh"  # wait_for FILE PATTERN SECONDS

"$NODE" id --key "$work/a.key" > /dev/null
"$NODE" id --key "$work/b.key" > /dev/null
echo '{ "enable_lan_discovery": false }' > "$work/a.json"
timeout 60 "$NODE" run --json --no-bootstrap --key "$work/a.key" --config "$work/a.json" \
  --address 127.0.0.1 --port 0 --no-port-mapping --status 127.0.0.1:0 --for 55 > "$work/a.out" 2>&1 &
pids+=($!)
if ! wait_for "$work/a.out" '"event":"status"' 20; then
  echo "FAIL: the node did not start its status page: $(cat "$work/a.out")"
  exit 1
fi
endpoint=$(sed -n 's/.*"event":"listening","endpoint":"\([^"]*\)".*/\1/p' "$work/a.out" | head -1)
key=$(sed -n 's/.*"event":"listening".*"key":"\([0-9a-f]*\)".*/\1/p' "$work/a.out" | head -1)
url=$(sed -n 's/.*"event":"status","url":"\([^"]*\)".*/\1/p' "$work/a.out" | head -1)
b_id=$("$NODE" id --json --key "$work/b.key" | sed -n 's/.*"id":"\([0-9a-f]*\)".*/\1/p')
cat > "$work/b.json" <<JSON
{ "hard_coded_contacts": [ { "endpoint": "$endpoint", "key": "$key" } ],
  "enable_lan_discovery": false }
JSON
timeout 50 "$NODE" run --json --key "$work/b.key" --config "$work/b.json" --address 127.0.0.1 \
  --port 0 --no-port-mapping --for 45 > "$work/b.out" 2>&1 &
pids+=($!)
if ! wait_for "$work/b.out" '"event":"BootstrapConnect"' 20; then
  echo "FAIL: the second node did not connect: $(cat "$work/b.out")"
  exit 1
fi

flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
  --disable-background-networking --disable-component-update --disable-sync
  --user-data-dir="$work/profile" --virtual-time-budget=5000)
failures=0
dom=$(timeout 60 "$browser" "${flags[@]}" --dump-dom "$url" 2> "$work/chromium.log")
if [[ "$dom" == *"class=\"peer\" data-id=\"$b_id\""* ]]; then
  echo "ok: the page lists the connected peer ${b_id:0:16}"
else
  echo "FAIL: the page does not list peer $b_id; the browser saw:"
  echo "$dom" | head -40
  tail -5 "$work/chromium.log"
  failures=$((failures + 1))
fi
mkdir -p "$OUT"
rm -f "$OUT/status_page.png"
timeout 60 "$browser" "${flags[@]}" --window-size=1100,700 --screenshot="$OUT/status_page.png" \
  "$url" > /dev/null 2>> "$work/chromium.log"
if [ -s "$OUT/status_page.png" ]; then
  echo "ok: screenshot kept in $OUT/status_page.png"
else
  echo "FAIL: no screenshot: $(tail -5 "$work/chromium.log")"
  failures=$((failures + 1))
fi
echo "$failures failed"
[ $failures -eq 0 ]
