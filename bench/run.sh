#!/usr/bin/env bash
# The benchmark suite: builds in release mode (build-release), runs every
# scenario with its baseline in the same run (interleaved repetitions,
# medians), writes bench/results/<date>.json, <date>.md and
# <date>-throughput.png, and prints the table of ratios and goals.
#   ./bench/run.sh [repetitions]        (as root for the lab scenarios)
# Scenarios (each a JSON file bench/results/<date>-<name>.json):
#   throughput  Crust vs raw TCP and TLS 1.3, 64 B to 1 MiB  (bench_throughput)
#   handshake   handshakes/s per core vs OpenSSL's operation bound (bench_handshake)
#   memory      heap per idle connection at 1 000 and 10 000  (bench_idle_memory)
#   connect     connect + first round trip in RTTs vs TLS 1.3, namespaces (connect.sh)
#   punch       time to a punched connection through two cone NATs (the NAT lab)
#   utp         µTP vs TCP and libutp (utp.sh)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
reps=${1:-3}
"$root/.ci/install-deps.sh" || exit 1
if [ ! -f build-release/build.ninja ]; then
  CXX=g++ meson setup build-release --buildtype=release -Dwerror=false -Dtests=false >/dev/null || exit 1
fi
meson configure build-release -Dbench=true >/dev/null
ninja -C build-release bench/bench_throughput bench/bench_handshake bench/bench_idle_memory \
  bench/bench_connect examples/crust-node/crust-node examples/crust-xfer >/dev/null || exit 1
B=build-release/bench
out=bench/results
day=$(date -u +%Y-%m-%d)
mkdir -p "$out"
rm -f "$out/$day"-{throughput,handshake,memory,connect,punch,utp}.json
status=0
step() { echo; echo "== $1"; }

step "stream throughput ($reps repetitions)"
"$B/bench_throughput" "$reps" "$out/$day-throughput.json" || status=1
step "handshakes per second"
"$B/bench_handshake" $((reps + 2)) "$out/$day-handshake.json" || status=1
step "memory per idle connection"
"$B/bench_idle_memory" "$out/$day-memory.json" || status=1
if [ "$(id -u)" = 0 ]; then
  step "connect + first round trip (namespaces, delayed link)"
  bench/connect.sh "$B/bench_connect" "$out/$day-connect.json" $((reps * 3)) || status=1
  step "hole punching through two cone NATs (the NAT lab, $reps runs)"
  punch_log=$(mktemp)
  for i in $(seq "$reps"); do
    MATRIX_ONLY="full-full cone-cone" MATRIX_DELAY_MS=20 \
      tests/netlab/matrix_test.sh build-release/examples/crust-node/crust-node >> "$punch_log" 2>&1 ||
      { status=1; tail -5 "$punch_log"; }
  done
  python3 - "$punch_log" "$out/$day-punch.json" <<'PY'
import json, re, sys
pairs = {"full cone": [], "port-restricted cone": []}
for line in open(sys.argv[1]):
    m = re.match(r"(full cone|port-restricted cone)\s+\1\s+yes\s+punched\s+\S+\s+[\d.]+ ms\s+([\d.]+) ms", line)
    if m:
        pairs[m.group(1)].append(float(m.group(2)))
json.dump({"benchmark": "punch", "rtt_ms": 80.0, "link_delay_ms_each_way_per_uplink": 20,
           "pairs": {k: v for k, v in pairs.items() if v}}, open(sys.argv[2], "w"))
print({k: v for k, v in pairs.items()})
PY
  rm -f "$punch_log"
else
  echo "not root: the connect and hole-punch scenarios need network namespaces; skipped"
fi
step "µTP"
bench/utp.sh "$reps" "$out/$day-utp.json" || status=1

step "report"
python3 bench/report.py "$out" "$day" || status=1
echo
echo "written: $out/$day.json, $out/$day.md"
exit $status
