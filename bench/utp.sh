#!/usr/bin/env bash
# µTP throughput against TCP and against libutp, as ratios measured in one run:
#   loopback:    crust-xfer over µTP and over TCP (the same harness, the bare
#                transports), and libutp (npm utp-native) sending to itself;
#   1 % loss:    crust-xfer µTP and TCP between two network namespaces with
#                1 % random loss each way (nftables); root only.
#   50 ms RTT and 1 % loss: the same over a link that
#                tests/netlab/delay_link.py delays 25 ms each way (this
#                kernel has no netem; the relay passes whole Ethernet
#                frames, so TCP stays end to end); root only.
# Runs interleaved repetitions and reports medians. Builds the release tree
# (build-release) if needed. Writes bench/results/utp-<date>.json.
#   ./bench/utp.sh [repetitions] [out.json]
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
reps=${1:-3}
"$root/.ci/install-deps.sh" || exit 1
if [ ! -f build-release/build.ninja ]; then
  CXX=g++ meson setup build-release --buildtype=release -Dwerror=false -Dtests=false >/dev/null
fi
ninja -C build-release examples/crust-xfer >/dev/null || exit 1
XFER=$root/build-release/examples/crust-xfer
PEER="node $root/tests/interop/utp/utp_peer.js"
work=$(mktemp -d /tmp/crust-utp-bench-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
MiB=$((1 << 20))

median() { sort -g | awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]; else print 0}'; }

# xfer_run PREFIX_CMD BIND BYTES [--tcp]: MB/s of one crust-xfer transfer.
xfer_run() {
  local ns_cmd=$1 bind=$2 bytes=$3 mode=${4:-}
  $ns_cmd timeout 200 "$XFER" recv $mode --bind "$bind" --port 0 --timeout 190 > "$work/r" 2>&1 &
  local rp=$!
  pids+=("$rp")
  for _ in $(seq 100); do grep -q LISTENING "$work/r" && break; sleep 0.05; done
  local port
  port=$(awk '/LISTENING/ {print $2}' "$work/r")
  ${SEND_NS:-$ns_cmd} timeout 200 "$XFER" send $mode --to "$bind:$port" --bytes "$bytes" \
    --timeout 190 > "$work/s" 2>&1
  wait "$rp"
  awk '/^SENT/ {print $4}' "$work/s"
}

libutp_run() {
  local bytes=$1
  timeout 120 $PEER server --host 127.0.0.1 --port 0 --mode sink --timeout 110 > "$work/lr" 2>&1 &
  local sp=$!
  pids+=("$sp")
  for _ in $(seq 100); do grep -q LISTENING "$work/lr" && break; sleep 0.05; done
  local port
  port=$(awk '/LISTENING/ {print $2}' "$work/lr")
  timeout 120 $PEER client --host 127.0.0.1 --port "$port" --bytes "$bytes" --mode send \
    --timeout 110 > "$work/lc" 2>&1
  wait "$sp"
  awk -v b="$bytes" '/^ELAPSED_MS/ {printf "%.2f\n", b / 1e6 / ($2 / 1000)}' "$work/lc"
}

echo "loopback, $reps interleaved repetitions"
declare -a lo_utp lo_tcp lo_lib
for i in $(seq "$reps"); do
  lo_utp+=("$(xfer_run "" 127.0.0.1 $((256 * MiB)))")
  lo_tcp+=("$(xfer_run "" 127.0.0.1 $((256 * MiB)) --tcp)")
  lo_lib+=("$(libutp_run $((64 * MiB)))")
  echo "  run $i: µTP ${lo_utp[-1]} MB/s, TCP ${lo_tcp[-1]} MB/s, libutp ${lo_lib[-1]} MB/s"
done
m_utp=$(printf '%s\n' "${lo_utp[@]}" | median)
m_tcp=$(printf '%s\n' "${lo_tcp[@]}" | median)
m_lib=$(printf '%s\n' "${lo_lib[@]}" | median)

# lossy_up NS...: brings up lo and eth0 in each namespace and drops 1 % of
# what leaves eth0 (nftables).
lossy_up() {
  local n
  for n in "$@"; do
    nsenter -t "$n" -n ip link set lo up
    nsenter -t "$n" -n ip link set eth0 up
    nsenter -t "$n" -n nft add table inet crust_loss
    nsenter -t "$n" -n nft add chain inet crust_loss out '{ type filter hook output priority 0; }'
    nsenter -t "$n" -n nft add rule inet crust_loss out oifname eth0 numgen random mod 1000 \< 10 drop
  done
}

net_utp="" net_tcp="" delay_utp="" delay_tcp=""
if [ "$(id -u)" = 0 ] && command -v tc >/dev/null; then
  unshare --net -- sleep 600 & A=$!; pids+=("$A")
  unshare --net -- sleep 600 & B=$!; pids+=("$B")
  sleep 0.3
  nsenter -t "$A" -n ip link add eth0 type veth peer name eth0 netns "$B"
  nsenter -t "$A" -n ip addr add 198.18.0.1/24 dev eth0
  nsenter -t "$B" -n ip addr add 198.18.0.2/24 dev eth0
  lossy_up "$A" "$B"
  echo "1 % loss each way (nftables, no added delay), $reps interleaved repetitions"
  declare -a n_utp n_tcp
  for i in $(seq "$reps"); do
    n_utp+=("$(SEND_NS="nsenter -t $A -n" xfer_run "nsenter -t $B -n" 198.18.0.2 $((16 * MiB)))")
    n_tcp+=("$(SEND_NS="nsenter -t $A -n" xfer_run "nsenter -t $B -n" 198.18.0.2 $((16 * MiB)) --tcp)")
    echo "  run $i: µTP ${n_utp[-1]} MB/s, TCP ${n_tcp[-1]} MB/s"
  done
  net_utp=$(printf '%s\n' "${n_utp[@]}" | median)
  net_tcp=$(printf '%s\n' "${n_tcp[@]}" | median)

  # 50 ms RTT: two more namespaces joined by the delayed TAP pair.
  unshare --net -- sleep 600 & C=$!; pids+=("$C")
  unshare --net -- sleep 600 & D=$!; pids+=("$D")
  sleep 0.3
  nsenter -t "$C" -n -- timeout 590 python3 "$root/tests/netlab/delay_link.py" \
    --a "ud$$c" --b "ud$$d" --ms 25 --seconds 590 > "$work/delay.out" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do grep -q ready "$work/delay.out" && break; sleep 0.05; done
  nsenter -t "$C" -n ip link set "ud$$d" netns "$D"
  nsenter -t "$C" -n ip link set "ud$$c" name eth0
  nsenter -t "$D" -n ip link set "ud$$d" name eth0
  nsenter -t "$C" -n ip addr add 198.18.1.1/24 dev eth0
  nsenter -t "$D" -n ip addr add 198.18.1.2/24 dev eth0
  lossy_up "$C" "$D"
  nsenter -t "$C" -n ping -c 2 -W 2 198.18.1.2 > /dev/null 2>&1  # neighbour caches
  echo "50 ms RTT (25 ms each way) and 1 % loss each way, $reps interleaved repetitions"
  declare -a d_utp d_tcp
  for i in $(seq "$reps"); do
    d_utp+=("$(SEND_NS="nsenter -t $C -n" xfer_run "nsenter -t $D -n" 198.18.1.2 $((4 * MiB)))")
    d_tcp+=("$(SEND_NS="nsenter -t $C -n" xfer_run "nsenter -t $D -n" 198.18.1.2 $((4 * MiB)) --tcp)")
    echo "  run $i: µTP ${d_utp[-1]} MB/s, TCP ${d_tcp[-1]} MB/s"
  done
  delay_utp=$(printf '%s\n' "${d_utp[@]}" | median)
  delay_tcp=$(printf '%s\n' "${d_tcp[@]}" | median)
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}'; }
echo
echo "| scenario | µTP MB/s | baseline MB/s | ratio | goal |"
echo "|---|---:|---:|---:|---:|"
echo "| loopback vs TCP | $m_utp | $m_tcp | $(ratio "$m_utp" "$m_tcp") | ≥ 0.6 |"
echo "| loopback vs libutp | $m_utp | $m_lib | $(ratio "$m_utp" "$m_lib") | ≥ 2 |"
if [ -n "$net_utp" ]; then
  echo "| 1 % loss (no added delay) vs TCP | $net_utp | $net_tcp | $(ratio "$net_utp" "$net_tcp") | ≥ 0.8 (at 50 ms RTT) |"
  echo "| 50 ms RTT, 1 % loss vs TCP | $delay_utp | $delay_tcp | $(ratio "$delay_utp" "$delay_tcp") | ≥ 0.8 |"
else
  echo "| 1 % loss vs TCP | (needs root) | | | ≥ 0.8 |"
fi
mkdir -p bench/results
out=${2:-bench/results/utp-$(date -u +%Y-%m-%d).json}
cat > "$out" <<EOF
{"benchmark": "utp", "repetitions": $reps,
 "loopback": {"utp_mbps": [$(IFS=,; echo "${lo_utp[*]}")], "tcp_mbps": [$(IFS=,; echo "${lo_tcp[*]}")],
              "libutp_mbps": [$(IFS=,; echo "${lo_lib[*]}")]},
 "loss_1pct": {"utp_mbps": [${n_utp[*]+$(IFS=,; echo "${n_utp[*]}")}], "tcp_mbps": [${n_tcp[*]+$(IFS=,; echo "${n_tcp[*]}")}]},
 "rtt50_loss_1pct": {"utp_mbps": [${d_utp[*]+$(IFS=,; echo "${d_utp[*]}")}], "tcp_mbps": [${d_tcp[*]+$(IFS=,; echo "${d_tcp[*]}")}]}}
EOF
echo "written: $out"
