#!/usr/bin/env bash
# Connect + first round trip, in round trips, for raw TCP, TCP + TLS 1.3
# and Crust, between two network namespaces joined by one link that
# tests/netlab/delay_link.py delays CONNECT_DELAY_MS (25) each way: this
# kernel has no netem, so the delay is a user-space relay of whole
# Ethernet frames (it does not split TCP). Root only.
#   bench/connect.sh BENCH_CONNECT OUT.json [rounds]
set -uo pipefail
bin=$1 out=$2 rounds=${3:-7}
root=$(cd "$(dirname "$0")/.." && pwd)
LAB_NAME=bench-connect LAB_SECONDS=${LAB_SECONDS:-240}
# shellcheck source=tests/netlab/lib.sh
. "$root/tests/netlab/lib.sh"
delay=${CONNECT_DELAY_MS:-25}

new_ns; A=$NS
new_ns; B=$NS
ta="bca$$" tb="bcb$$"
nsenter -t "$A" -n -- timeout "$LAB_SECONDS" python3 "$root/tests/netlab/delay_link.py" \
  --a "$ta" --b "$tb" --ms "$delay" --seconds "$LAB_SECONDS" > "$work/delay.out" 2>&1 &
pids+=($!)
wait_for "$work/delay.out" ready 10 || { echo "delay_link.py did not start"; exit 1; }
in_ns "$A" ip link set "$tb" netns "$B"
in_ns "$A" ip addr add 198.18.5.1/24 dev "$ta"
in_ns "$B" ip addr add 198.18.5.2/24 dev "$tb"
for ns in "$A" "$B"; do in_ns "$ns" ip link set lo up; done
in_ns "$A" ip link set "$ta" up
in_ns "$B" ip link set "$tb" up

in_ns "$B" timeout $((LAB_SECONDS - 10)) "$bin" serve 7001 7002 7003 $((LAB_SECONDS - 20)) \
  "$work/cert.pem" > "$work/serve.out" 2> "$work/serve.err" &
pids+=($!)
wait_for "$work/serve.out" '^key ' 20 || { echo "server did not start: $(cat "$work/serve.err")"; exit 1; }
key=$(sed -n 's/^key //p' "$work/serve.out")
if ! in_ns "$A" timeout $((LAB_SECONDS - 30)) "$bin" dial 198.18.5.2 7001 7002 7003 "$key" "$rounds" \
  "$work/cert.pem" > "$work/dial.json" 2> "$work/dial.err"; then
  echo "dialler failed: $(tail -5 "$work/dial.err")"
  exit 1
fi
python3 - "$work/dial.json" "$out" "$delay" <<'PY'
import json, sys
o = json.load(open(sys.argv[1]))
o["link_delay_ms_each_way"] = float(sys.argv[3])
json.dump(o, open(sys.argv[2], "w"))
print(f"link {o['link_delay_ms_each_way']:.0f} ms each way, measured RTT {o['rtt_ms']:.1f} ms")
print(f"  TCP connect + echo: {o['tcp_rtts']:.2f} RTT; TLS 1.3: {o['tls_rtts']:.2f} RTT; "
      f"Crust: {o['crust_rtts']:.2f} RTT (connect() alone {o['crust_connect_rtts']:.2f})")
PY
