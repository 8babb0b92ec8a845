#!/usr/bin/env bash
# µTP across a real link between two network namespaces (198.18.0.0/24,
# inside RFC 2544 space). This kernel has no netem (CONFIG_NET_SCH_NETEM is
# off), so the impairments come from what it does have:
#   1. 32 MiB, bit-exact, under 1 %, 5 % and 10 % random loss both ways
#      (nftables `numgen random` drops in each namespace's output), and
#      through tests/netlab/impair.py, a UDP relay that adds 25 ms each way
#      with 5 ms jitter and reordering, or 5 % duplication; each bounded in
#      time;
#   2. on a tbf bottleneck in a router namespace between the two, a Reno
#      TCP flow that starts while µTP is running keeps at least 60 % of what
#      it gets alone (µTP yields), and the queueing delay µTP alone causes,
#      measured with ping, is near LEDBAT's 100 ms target. SKIP_LEDBAT=1
#      leaves this part out;
#   3. through the same router with an MTU of 1400 behind A's 1500 link,
#      the path MTU search settles just below what the path carries.
# The namespaces are held by `sleep` processes made with unshare; every
# process is bounded by `timeout` and killed by PID at the end, pass or
# fail. Needs root; exits 77 (skipped) without it.
# Usage: utp_link_test.sh CRUST_XFER_BINARY [quick]
set -uo pipefail
XFER=${1:?usage: utp_link_test.sh CRUST_XFER_BINARY}
if [ "$(id -u)" != 0 ] || ! command -v tc >/dev/null || ! command -v nft >/dev/null ||
   ! command -v nsenter >/dev/null; then
  echo "SKIP: needs root, tc (iproute2), nft (nftables) and nsenter"
  exit 77
fi

LAB_NAME=link LAB_SECONDS=900
# shellcheck source=tests/netlab/lib.sh
. "$(dirname "$0")/lib.sh"

new_ns; A=$NS
new_ns; B=$NS
in_ns "$A" ip link add eth0 type veth peer name eth0 netns "$B"
in_ns "$A" ip addr add 198.18.0.1/24 dev eth0
in_ns "$B" ip addr add 198.18.0.2/24 dev eth0
for n in "$A" "$B"; do
  in_ns "$n" ip link set lo up
  in_ns "$n" ip link set eth0 up
  # Not per-namespace on every kernel (this one refuses it): best effort.
  in_ns "$n" sysctl -qw net.core.rmem_max=8388608 net.core.wmem_max=8388608 2>/dev/null || true
done

# lossy PERMILLE [NAMESPACES]: random loss on the way out of each namespace
# given (both by default; 0 removes it).
lossy() {
  local n
  for n in ${2:-$A $B}; do
    in_ns "$n" nft delete table inet crust_loss 2>/dev/null
    [ "$1" -eq 0 ] && continue
    in_ns "$n" nft add table inet crust_loss
    in_ns "$n" nft add chain inet crust_loss out '{ type filter hook output priority 0; }'
    in_ns "$n" nft add rule inet crust_loss out oifname eth0 numgen random mod 1000 \< "$1" drop
  done
}

# transfer NAME BYTES LIMIT_S [--tcp]: B receives (on $BIND if set, else
# 198.18.0.2), A sends (to $VIA if set, else straight to B); prints the SENT
# line.
transfer() {
  local name=$1 bytes=$2 limit=$3 mode=${4:-}
  rm -f "$work/recv.out" "$work/send.out"
  nsenter -t "$B" -n -- timeout $((limit + 5)) "$XFER" recv $mode --bind "${BIND:-198.18.0.2}" --port 7000 \
    --timeout "$((limit + 2))" > "$work/recv.out" 2>&1 &
  local rp=$!
  pids+=("$rp")
  wait_for "$work/recv.out" LISTENING 10 || { bad "$name: receiver did not start"; return 1; }
  nsenter -t "${SENDER:-$A}" -n -- timeout $((limit + 5)) "$XFER" send $mode --to "${VIA:-198.18.0.2:7000}" \
    --bytes "$bytes" --timeout "$limit" > "$work/send.out" 2>&1 &
  local sp=$!
  pids+=("$sp")
  wait "$sp"; local src=$?
  wait "$rp"; local rrc=$?
  if [ $src -eq 0 ] && [ $rrc -eq 0 ] && grep -q "RECEIVED $bytes OK" "$work/recv.out"; then
    ok "$name: $(grep SENT "$work/send.out") $(grep UTP "$work/send.out" || true)"
    return 0
  fi
  bad "$name: sender exit $src, receiver exit $rrc: $(cat "$work/send.out" "$work/recv.out" | tr '\n' ' ')"
  return 1
}

MiB=$((1 << 20))
quick=${2:-}
size=$((32 * MiB))
[ -n "$quick" ] && size=$((4 * MiB))

# 1. Loss, delay, reordering, duplication: 32 MiB bit-exact each time.
lossy 10;  transfer "1 % loss both ways" $size 180
lossy 50;  transfer "5 % loss both ways" $size 240
# 10 % on the data's way only (as netem on the sender's interface would
# be); the simulator covers 10 % both ways (tests/unit/transports).
lossy 0
lossy 100 "$A"; transfer "10 % loss on the data path" $size 420
lossy 0

# relayed NAME RELAY_ARGS: through impair.py in B (sender and receiver in B
# too, over B's loopback to the relay and on to 198.18.0.2).
relayed() {
  local name=$1; shift
  rm -f "$work/relay.out"
  nsenter -t "$B" -n -- timeout 200 /usr/bin/python3 "$(dirname "$0")/impair.py" \
    --listen 127.0.0.1:0 --to 198.18.0.2:7000 --seconds 190 "$@" > "$work/relay.out" 2>&1 &
  local rp=$!
  pids+=("$rp")
  wait_for "$work/relay.out" RELAY 10 || { bad "$name: relay did not start"; return; }
  VIA="127.0.0.1:$(awk '/RELAY/ {print $2}' "$work/relay.out")" SENDER=$B transfer "$name" $size 180
  kill -TERM "$rp" 2>/dev/null
  wait "$rp" 2>/dev/null
  echo "   relay: $(grep COUNTS "$work/relay.out" || true)"
}
relayed "50 ms RTT, 5 ms jitter, 5 % held back (reordering)" --delay-ms 25 --jitter-ms 5 --reorder 0.05
relayed "5 % duplication, 10 ms RTT" --delay-ms 5 --dup 0.05

# 2. LEDBAT yields to TCP. A 20 Mbit/s bottleneck (tbf, room for 600 ms of
#    queue) in a router R between A and B: TCP alone, then TCP started while
#    µTP runs. The bottleneck must not be on the sender's own interface:
#    there TCP Small Queues let a TCP socket keep only a couple of packets
#    in the local qdisc, so behind µTP's 100 ms of queue TCP crawls at ~4
#    packets per RTT whatever µTP does (the first version of this lab did
#    that and read it as µTP not yielding).
new_ns; R=$NS
in_ns "$A" ip link add eth1 type veth peer name eth0 netns "$R"
in_ns "$R" ip link add eth1 type veth peer name eth1 netns "$B"
in_ns "$A" ip addr add 198.18.1.1/24 dev eth1
in_ns "$R" ip addr add 198.18.1.2/24 dev eth0
in_ns "$R" ip addr add 198.18.2.1/24 dev eth1
in_ns "$B" ip addr add 198.18.2.2/24 dev eth1
for l in "$A eth1" "$R eth0" "$R eth1" "$B eth1" "$R lo"; do
  # shellcheck disable=SC2086
  in_ns ${l%% *} ip link set ${l#* } up
done
in_ns "$A" ip route add 198.18.2.0/24 via 198.18.1.2
in_ns "$B" ip route add 198.18.1.0/24 via 198.18.2.1
in_ns "$R" sysctl -qw net.ipv4.ip_forward=1
in_ns "$R" tc qdisc add dev eth1 root tbf rate 20mbit burst 32kbit latency 600ms
# Reno, loss-based TCP, as LEDBAT is designed to give way to. The host's
# default here is BBR, which keeps the queue short itself and takes its
# minimum RTT with µTP's 100 ms queue included: a delay-based sender never
# sees it push the delay up, so the two just split the link. (cubic is not
# allowed inside a namespace on this kernel; reno is.)
for n in "$A" "$B"; do in_ns "$n" sysctl -qw net.ipv4.tcp_congestion_control=reno; done
through() { VIA=198.18.2.2:7000 BIND=198.18.2.2 transfer "$@"; }

# 3. The path MTU search, through the router with its B side cut to an MTU
#    of 1400 while A's own link stays at 1500. A's probes of what its link
#    allows (1472-byte UDP payloads) are dropped by R, which answers with
#    ICMP "fragmentation needed"; B's own link says 1372. The search must
#    settle within its 32-byte step below 1372 and the data arrive intact.
#    The transfer lasts long enough for the lost probes' timeouts (20 Mbit/s).
in_ns "$R" ip link set eth1 mtu 1400
in_ns "$B" ip link set eth1 mtu 1400
if through "path MTU 1400 behind a 1500 link" $((24 * MiB)) 120; then
  mtu=$(grep -o 'mtu=[0-9]*' "$work/send.out" | tail -n 1 | cut -d= -f2)
  if [ -n "$mtu" ] && [ "$mtu" -le 1372 ] && [ "$mtu" -gt $((1372 - 32)) ]; then
    ok "the MTU search found $mtu bytes of UDP payload (the path carries 1372)"
  else
    bad "the MTU search ended at ${mtu:-?}, not within 32 bytes below 1372"
  fi
fi
in_ns "$R" ip link set eth1 mtu 1500
in_ns "$B" ip link set eth1 mtu 1500

if [ -n "${SKIP_LEDBAT:-}" ]; then
  echo "$failures failed"
  [ $failures -eq 0 ]
  exit
fi
tcp_bytes=$((24 * MiB))
[ -n "$quick" ] && tcp_bytes=$((8 * MiB))
through "TCP alone through the bottleneck" $tcp_bytes 120 --tcp
alone=$(awk '/^SENT/ {print $4}' "$work/send.out")

idle_rtt=$(in_ns "$A" ping -c 5 -i 0.2 -q 198.18.2.2 | awk -F/ '/^rtt/ {print $5}')
# µTP in the background, on another port: long enough to outlast TCP.
nsenter -t "$B" -n -- timeout 200 "$XFER" recv --bind 198.18.2.2 --port 7001 --timeout 190 \
  > "$work/bg_recv.out" 2>&1 &
pids+=($!)
wait_for "$work/bg_recv.out" LISTENING 10
nsenter -t "$A" -n -- timeout 200 "$XFER" send --to 198.18.2.2:7001 --bytes $((400 * MiB)) \
  --timeout 180 --progress > "$work/bg_send.out" 2>&1 &
bg=$!
pids+=("$bg")
sleep 6  # µTP has the link to itself: its queueing delay
utp_rtt=$(in_ns "$A" ping -c 10 -i 0.2 -q 198.18.2.2 | awk -F/ '/^rtt/ {print $5}')
through "TCP while µTP runs" $tcp_bytes 120 --tcp
shared=$(awk '/^SENT/ {print $4}' "$work/send.out")
# µTP's own view while TCP ran: its window and the queueing delay it measured.
echo "   µTP beside TCP: $(grep STATS "$work/bg_send.out" | tail -n 3 | head -n 1 |
  grep -o ' window=[0-9]*\| queue_ms=[0-9.]*' | tr -d '\n')"
kill -TERM "$bg" 2>/dev/null
wait "$bg" 2>/dev/null
echo "LEDBAT: TCP alone ${alone} MB/s, beside µTP ${shared} MB/s; ping RTT idle ${idle_rtt} ms," \
  "with µTP alone ${utp_rtt} ms (queueing delay ≈ $(awk -v a="$utp_rtt" -v b="$idle_rtt" 'BEGIN {printf "%.0f", a - b}') ms, target 100 ms)"
if [ -n "$alone" ] && [ -n "$shared" ] &&
   awk -v a="$alone" -v s="$shared" 'BEGIN {exit !(s >= 0.6 * a)}'; then
  ok "µTP yields: TCP keeps $(awk -v a="$alone" -v s="$shared" 'BEGIN {printf "%.0f", 100 * s / a}') % of what it gets alone"
else
  bad "µTP did not yield: TCP alone ${alone:-?} MB/s, beside µTP ${shared:-?} MB/s"
fi
# µTP alone keeps the queue near its target: well above nothing, well below
# what the bottleneck holds (600 ms). A behaviour check, not a timing one.
if [ -n "$utp_rtt" ] && awk -v r="$utp_rtt" 'BEGIN {exit !(r >= 30 && r <= 300)}'; then
  ok "µTP alone holds the queue at ${utp_rtt} ms of RTT (LEDBAT target 100 ms)"
else
  bad "µTP alone: RTT ${utp_rtt:-?} ms, not near the 100 ms target"
fi

echo "$failures failed"
[ $failures -eq 0 ]
