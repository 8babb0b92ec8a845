#!/usr/bin/env bash
# Multi-hop discovery by gossip between real network namespaces: three
# LANs joined only through one node each, routed, so LAN beacons never
# cross from one to another (198.19.11-13.0/24, inside RFC 2544 space):
#
#   a    198.19.11.2         LAN 1
#   r12  198.19.11.1 | 198.19.12.1    joins LAN 1 and LAN 2 (forwards)
#   r23  198.19.12.2 | 198.19.13.1    joins LAN 2 and LAN 3 (forwards)
#   c    198.19.13.2         LAN 3
#
# Every one runs crust-node with LAN discovery and nothing else to go on:
# r23 first, then r12 (finds r23 on LAN 2) and c (finds r23 on LAN 3),
# then a (finds r12 on LAN 1), which must learn of c by gossip (c -> r23
# -> r12 -> a), each hop proven by a dial-back, and connect to it by id.
#
# The namespaces are held by `sleep` processes made with unshare; every
# process is bounded by `timeout` and killed by PID at the end. Needs
# root; exits 77 (skipped) without it. Usage: gossip_test.sh CRUST_NODE
set -uo pipefail
NODE=${1:?usage: gossip_test.sh CRUST_NODE_BINARY}
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null || ! command -v nsenter >/dev/null; then
  echo "SKIP: needs root, iproute2 and nsenter"
  exit 77
fi

LAB_NAME=gossip
# shellcheck source=tests/netlab/lib.sh
. "$(dirname "$0")/lib.sh"

declare -A ns
for h in a r12 r23 c; do
  new_ns; ns[$h]=$NS
  in_ns "$NS" ip link set lo up
done
# link HOST_A IF_A ADDR_A HOST_B IF_B ADDR_B: one LAN of two, a veth pair.
link() {
  ip link add "g$1$2" netns "${ns[$1]}" type veth peer name "g$4$5" netns "${ns[$4]}"
  in_ns "${ns[$1]}" ip link set "g$1$2" name "$2"
  in_ns "${ns[$4]}" ip link set "g$4$5" name "$5"
  in_ns "${ns[$1]}" ip addr add "$3/24" broadcast "${3%.*}.255" dev "$2"
  in_ns "${ns[$4]}" ip addr add "$6/24" broadcast "${6%.*}.255" dev "$5"
  in_ns "${ns[$1]}" ip link set "$2" up
  in_ns "${ns[$4]}" ip link set "$5" up
}
link a eth0 198.19.11.2 r12 lan1 198.19.11.1
link r12 lan2 198.19.12.1 r23 lan2 198.19.12.2
link r23 lan3 198.19.13.1 c eth0 198.19.13.2
for r in r12 r23; do in_ns "${ns[$r]}" sysctl -qw net.ipv4.ip_forward=1; done
in_ns "${ns[a]}" ip route add default via 198.19.11.1
in_ns "${ns[c]}" ip route add default via 198.19.13.1
in_ns "${ns[r12]}" ip route add 198.19.13.0/24 via 198.19.12.2
in_ns "${ns[r23]}" ip route add 198.19.11.0/24 via 198.19.12.1

if in_ns "${ns[a]}" ping -c 1 -W 2 198.19.13.2 >/dev/null 2>&1; then
  ok "the LANs are routed: a reaches c's address"
else
  bad "a cannot reach 198.19.13.2: the lab is broken"
fi

# Rounds every half second, so the test takes seconds, not minutes.
echo '{ "gossip_interval_ms": 500, "lan_discovery_window_ms": 800, "enable_port_mapping": false }' > "$work/cfg.json"
id_of() { "$NODE" id --json --key "$work/$1.key" | sed -n 's/.*"id":"\([0-9a-f]*\)".*/\1/p'; }
# r23 runs a node (`run` bootstraps only from a cache or contacts, and it
# has neither); r12 and c run `peers`, which bootstraps off whoever
# answers a LAN beacon and then gossips for --for seconds.
nsenter -t "${ns[r23]}" -n -- timeout 100 "$NODE" run --json --key "$work/r23.key" \
  --config "$work/cfg.json" --network lab --address 0.0.0.0 --for 90 > "$work/r23.out" 2>&1 &
pids+=($!)
wait_for "$work/r23.out" '"listening"' 20 || { echo "r23 did not start"; cat "$work/r23.out"; exit 1; }
for h in r12 c; do
  nsenter -t "${ns[$h]}" -n -- timeout 100 "$NODE" peers --json --key "$work/$h.key" \
    --config "$work/cfg.json" --network lab --address 0.0.0.0 --for 60 > "$work/$h.out" 2>&1 &
  pids+=($!)
done
for _ in $(seq 200); do
  [ "$(grep -c '"event":"BootstrapAccept"' "$work/r23.out")" -ge 2 ] && break
  sleep 0.1
done
if grep -q '"event":"BootstrapAccept".*198.19.12.1' "$work/r23.out" &&
   grep -q '"event":"BootstrapAccept".*198.19.13.2' "$work/r23.out"; then
  ok "r12 (LAN 2) and c (LAN 3) bootstrapped off r23 by LAN beacon"
else
  bad "r12 and c did not both bootstrap off r23: $(cat "$work/r23.out")"
fi
idc=$(id_of c)

# a knows only LAN 1. It bootstraps off r12, gossips for 8 s, then looks
# c up by id and connects.
in_ns "${ns[a]}" timeout 60 "$NODE" peers --json --key "$work/a.key" --config "$work/cfg.json" \
  --network lab --address 0.0.0.0 --for 8 --find "$idc" > "$work/a.out" 2>&1
rc=$?
if grep -q "\"event\":\"known_peer\",\"id\":\"$idc\"" "$work/a.out"; then
  line=$(grep "\"event\":\"known_peer\",\"id\":\"$idc\"" "$work/a.out")
  if echo "$line" | grep -q "\"taught_by\":\"$idc\""; then
    bad "a was told of c by c itself, not by gossip: $line"
  else
    ok "a learnt of c on LAN 3 by gossip, from another node: $(echo "$line" | grep -o '"endpoints":\[[^]]*\]')"
  fi
else
  bad "a never learnt of c: $(cat "$work/a.out")"
fi
if [ $rc -eq 0 ] && grep '"event":"peers_done"' "$work/a.out" | grep -q "\"connected\":{\"id\":\"$idc\""; then
  ok "a found c by id and connected to it across two routers"
else
  bad "a did not connect to c (exit $rc): $(tail -3 "$work/a.out")"
fi
echo "$failures failed"
[ $failures -eq 0 ]
