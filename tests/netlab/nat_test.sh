#!/usr/bin/env bash
# NAT behaviour discovery through real nftables NAT routers:
#
#   pub  198.18.0.1, 198.18.0.2   the "internet": two crust-node observers
#                                 (one per address) and coturn on both
#                                 addresses, ports 3478/3479 (RFC 5780)
#   rtr  wan 198.18.0.11          the NAT: `masquerade` (a port-preserving
#        lan 198.19.1.1           cone), the same with inbound UDP sent on
#                                 to the host (a full cone), then
#                                 `masquerade fully-random` (symmetric);
#                                 otherwise unsolicited inbound is dropped
#   host 198.19.1.2               runs crust-node nat against all of them
#
# What must come out: behind the cone, an endpoint-independent mapping
# that keeps the port, address-and-port-dependent filtering (only replies
# get in) and no hairpinning, and a connection info whose reflexive
# candidate is the router's address, learnt from a bootstrap peer; behind
# the full cone, endpoint-independent
# filtering; behind the symmetric NAT, a mapping that
# depends on address and port, random ports, and "not punchable". Every
# process is bounded by `timeout` and killed by PID at the end, pass or
# fail. Needs root; exits 77 (skipped) without it.
# Usage: nat_test.sh CRUST_NODE_BINARY
set -uo pipefail
NODE=${1:?usage: nat_test.sh CRUST_NODE_BINARY}
if [ "$(id -u)" != 0 ] || ! command -v nft >/dev/null || ! command -v nsenter >/dev/null; then
  echo "SKIP: needs root, nft (nftables) and nsenter"
  exit 77
fi
TURN=/usr/bin/turnserver
[ -x "$TURN" ] || { echo "FAIL: coturn is not installed (.ci/install-deps.sh installs it)"; exit 1; }

LAB_NAME=nat LAB_SECONDS=120
# shellcheck source=tests/netlab/lib.sh
. "$(dirname "$0")/lib.sh"

new_ns; PUB=$NS
new_ns; RTR=$NS
new_ns; HOST=$NS
in_ns "$PUB" ip link add wan type veth peer name wan0 netns "$RTR"
in_ns "$RTR" ip link add lan0 type veth peer name eth0 netns "$HOST"
in_ns "$PUB" ip addr add 198.18.0.1/24 dev wan
in_ns "$PUB" ip addr add 198.18.0.2/24 dev wan
in_ns "$RTR" ip addr add 198.18.0.11/24 dev wan0
in_ns "$RTR" ip addr add 198.19.1.1/24 dev lan0
in_ns "$HOST" ip addr add 198.19.1.2/24 dev eth0
for n in "$PUB" "$RTR" "$HOST"; do in_ns "$n" ip link set lo up; done
in_ns "$PUB" ip link set wan up
in_ns "$RTR" ip link set wan0 up
in_ns "$RTR" ip link set lan0 up
in_ns "$HOST" ip link set eth0 up
in_ns "$HOST" ip route add default via 198.19.1.1
in_ns "$RTR" sysctl -qw net.ipv4.ip_forward=1
# The public side has no route back to the LAN: only NAT gets through.

# The NAT (lib.sh's nat_router), on the router in front of the host.
nat_rules() { nat_router "$RTR" 198.19.1.2 "$@"; }

"$NODE" id --key "$work/o1.key" >/dev/null
"$NODE" id --key "$work/o2.key" >/dev/null
nsenter -t "$PUB" -n -- timeout 110 "$NODE" listen --json --key "$work/o1.key" \
  --address 198.18.0.1 --port 0 --for 100 > "$work/o1.out" 2>&1 &
pids+=($!)
nsenter -t "$PUB" -n -- timeout 110 "$NODE" listen --json --key "$work/o2.key" \
  --address 198.18.0.2 --port 0 --for 100 > "$work/o2.out" 2>&1 &
pids+=($!)
nsenter -t "$PUB" -n -- timeout 110 "$TURN" -n --listening-ip=198.18.0.1 --listening-ip=198.18.0.2 \
  --listening-port=3478 --alt-listening-port=3479 --stun-only --no-tcp --no-tls --no-dtls \
  --no-cli --log-file=stdout --simple-log --pidfile="$work/coturn.pid" > "$work/coturn.out" 2>&1 &
pids+=($!)
wait_for "$work/o1.out" '"listening"' 20 || { echo "FAIL: observer 1 did not start"; exit 1; }
wait_for "$work/o2.out" '"listening"' 20 || { echo "FAIL: observer 2 did not start"; exit 1; }
udp_of() { sed -n 's/.*"event":"listening".*"udp":"[^"]*:\([0-9]*\)".*/\1/p' "$1" | head -1; }
u1=$(udp_of "$work/o1.out"); u2=$(udp_of "$work/o2.out")
observers=("198.18.0.1:$u1" "198.18.0.2:$u2" "198.18.0.1:3478")
sleep 1  # coturn's start-up

# Runs crust-node nat on the host; the JSON report goes to $work/$1.json.
report() {
  in_ns "$HOST" timeout 60 "$NODE" nat --json "${observers[@]}" > "$work/$1.json" 2> "$work/$1.err"
}
field() { sed -n "s/.*\"$2\":\\(\"[^\"]*\"\\|true\\|false\\|null\\|[0-9]*\\).*/\\1/p" "$work/$1.json"; }
expect() {  # name field value what
  local got
  got=$(field "$1" "$2")
  if [ "$got" = "$3" ]; then ok "$4 ($2 $got)"; else bad "$4: $2 is $got, expected $3: $(cat "$work/$1.json" "$work/$1.err")"; fi
}

# 1. A port-preserving cone (Linux masquerade keeps the source port).
nat_rules masquerade
report cone
expect cone mapping '"endpoint-independent"' "cone: one mapping for every observer"
expect cone allocation '"port-preserving"' "cone: the local port is kept"
expect cone filtering '"address-and-port-dependent"' "cone: only replies get in"
expect cone hairpinning false "cone: no hairpinning without a hairpin rule"
expect cone punchable true "cone: direct UDP expected to work"
if grep -q '"external":\["198.18.0.11:' "$work/cone.json"; then ok "cone: the external address is the router's"; else bad "cone: external address: $(cat "$work/cone.json")"; fi

# 1b. Connection info behind the cone. Bootstrapped off observer 1 (named
# by address only), the node learns its reflexive UDP endpoint from that
# peer, whose admit named its UDP port; no STUN server is given.
t1=$(sed -n 's/.*"event":"listening","endpoint":"198.18.0.1:\([0-9]*\)".*/\1/p' "$work/o1.out" | head -1)
cat > "$work/info.json" <<EOF
{ "hard_coded_contacts": [ { "endpoint": "198.18.0.1:$t1" } ], "enable_lan_discovery": false }
EOF
in_ns "$HOST" timeout 60 "$NODE" info --json --key "$work/h.key" --config "$work/info.json" \
  --address 198.19.1.2 --bootstrap > "$work/info.out" 2> "$work/info.err"
if grep -q '{"transport":"udp","kind":"reflexive","endpoint":"198.18.0.11:' "$work/info.out"; then
  ok "cone: the connection info has the router's address as a reflexive UDP candidate"
else
  bad "cone: connection info: $(cat "$work/info.out" "$work/info.err")"
fi
# With a second observer named, the info's NAT hint can say what the mapping is.
in_ns "$HOST" timeout 60 "$NODE" info --json --key "$work/h.key" --config "$work/info.json" \
  --address 198.19.1.2 --bootstrap --stun "198.18.0.2:$u2" > "$work/info2.out" 2> "$work/info2.err"
if grep -q '"mapping":"endpoint-independent"' "$work/info2.out" &&
   grep -q '{"transport":"tcp","kind":"host","endpoint":"198.19.1.2:' "$work/info2.out"; then
  ok "cone: the info names its TCP host candidate and an endpoint-independent mapping"
else
  bad "cone: connection info NAT hint or host candidate: $(cat "$work/info2.out" "$work/info2.err")"
fi

# 2. A full cone: anyone may send to the mapping.
nat_rules masquerade full
report full
expect full mapping '"endpoint-independent"' "full cone: one mapping for every observer"
expect full filtering '"endpoint-independent"' "full cone: an answer from another address gets in"

# 3. Symmetric: a random port for every new destination.
nat_rules "masquerade fully-random"
report sym
expect sym mapping '"address-and-port-dependent"' "symmetric: a mapping per address and port"
expect sym allocation '"random"' "symmetric: random ports"
expect sym punchable false "symmetric: not punchable without a relay"

echo "$failures failed"
[ $failures -eq 0 ]
