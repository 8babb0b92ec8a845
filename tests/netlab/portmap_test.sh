#!/usr/bin/env bash
# Port mapping against a real gateway: miniupnpd (UPnP-IGD, NAT-PMP and PCP)
# on an nftables NAT router.
#
#   pub  198.18.0.1, 198.18.0.2   the "internet": stund (miniupnpd asks it
#                                 where it is: its WAN address is reserved)
#                                 and the peers that dial in
#   rtr  wan 198.18.0.11          masquerade (a port-restricted cone) and
#        lan 198.19.1.1           miniupnpd, which adds DNAT rules on request
#   host 198.19.1.2               crust-node portmap / listen / info
#
# For each protocol (PCP, NAT-PMP, UPnP): `crust-node portmap` maps a TCP
# and a UDP port, the router's nftables chain holds the forward, a peer
# outside reaches the host through it (a Crust handshake over TCP, a
# datagram over UDP), and when the hold ends the mappings are deleted and
# the chain is empty again. Then a node with port mapping on (the default)
# puts both mappings in its connection info as "mapped" candidates, a
# peer outside connects to the mapped TCP one, and the node removes them
# when it stops. A node rotating its port has its mapping follow: the
# router forwards its new port, not the old ones. Last, with miniupnpd gone, portmap says for each protocol
# why there is no mapping. Every process is bounded by `timeout` and killed
# by PID at the end, pass or fail. Needs root; exits 77 (skipped) without it.
# Usage: portmap_test.sh CRUST_NODE_BINARY
set -uo pipefail
NODE=${1:?usage: portmap_test.sh CRUST_NODE_BINARY}
if [ "$(id -u)" != 0 ] || ! command -v nft >/dev/null || ! command -v nsenter >/dev/null; then
  echo "SKIP: needs root, nft (nftables) and nsenter"
  exit 77
fi
for b in /usr/sbin/miniupnpd /usr/sbin/stund; do
  [ -x "$b" ] || { echo "FAIL: $b is not installed (.ci/install-deps.sh installs it)"; exit 1; }
done
PY=/usr/bin/python3

LAB_NAME=portmap LAB_SECONDS=260
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
in_ns "$RTR" ip route add default via 198.18.0.1  # miniupnpd wants a WAN route
in_ns "$RTR" sysctl -qw net.ipv4.ip_forward=1

# The NAT: a port-restricted cone that drops unsolicited inbound, but lets
# in what miniupnpd forwards, and miniupnpd with stund to ask.
miniupnpd_router "$RTR" 198.19.1.2 198.19.1.0/24 "$PUB" 190
ok "miniupnpd is up (its STUN check passed; port forwarding enabled)"

forwards() { in_ns "$RTR" nft list chain inet miniupnpd prerouting_miniupnpd 2>/dev/null | grep -c "dnat"; }
# A Crust handshake from outside through the router's PORT to KEY's node; its output in FILE.
dial_in() {  # PORT KEY FILE
  in_ns "$PUB" timeout 20 "$NODE" connect "198.18.0.11:$1" --peer "$2" \
    --key "$work/peer.key" --address 198.18.0.1 > "$3" 2>&1
}
# After a node stopped: no forward may be left on the router.
none_left() {  # WHAT
  if [ "$(forwards)" -eq 0 ]; then ok "$1: nothing forwarded after it stopped"; else bad "$1: $(forwards) dnat rules left after it stopped"; fi
}
node_key() { "$NODE" id --json --key "$1" | sed -n 's/.*"key":"\([0-9a-f]*\)".*/\1/p'; }
ext_port() {  # file protocol: the external port of the mapped line
  sed -n "s/.*\"event\":\"mapped\".*\"protocol\":\"$2\".*\"external\":\"198.18.0.11:\([0-9]*\)\".*/\1/p" "$1" | head -1
}

# A Crust node on the host that the outside dials through each mapping
# (port mapping off: portmap does the mapping here).
"$NODE" id --key "$work/host.key" >/dev/null
"$NODE" id --key "$work/peer.key" >/dev/null
key=$(node_key "$work/host.key")
in_ns "$HOST" timeout 180 "$NODE" listen --json --key "$work/host.key" --address 198.19.1.2 \
  --port 4000 --no-port-mapping --for 170 > "$work/host.out" 2>&1 &
pids+=($!)
wait_for "$work/host.out" '"listening"' 20 || { echo "FAIL: the host node did not start"; exit 1; }

# 1. Each protocol in turn.
port=4100
for method in pcp natpmp upnp; do
  port=$((port + 1))
  out="$work/portmap-$method.out"
  # The UDP receiver: one datagram from outside, written to a file.
  in_ns "$HOST" timeout 20 "$PY" -c "
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('198.19.1.2', $port))
s.settimeout(15)
data, addr = s.recvfrom(100)
open('$work/udp-$method', 'w').write(data.decode())
" &
  pids+=($!)
  in_ns "$HOST" timeout 40 "$NODE" portmap --json --method "$method" --tcp 4000 --udp "$port" \
    --address 198.19.1.2 --lifetime 600 --hold 6 > "$out" 2>&1 &
  pm=$!
  pids+=("$pm")
  if ! wait_for "$out" '"event":"mapped".*"protocol":"udp"' 10 ||
     ! wait_for "$out" '"event":"mapped".*"protocol":"tcp"' 5; then
    bad "$method: no mappings: $(cat "$out")"
    wait "$pm" 2>/dev/null
    continue
  fi
  tcp_ext=$(ext_port "$out" tcp)
  udp_ext=$(ext_port "$out" udp)
  if grep -q "\"method\":\"$method\"" "$out" && [ -n "$tcp_ext" ] && [ -n "$udp_ext" ]; then
    ok "$method: tcp 4000 -> 198.18.0.11:$tcp_ext, udp $port -> 198.18.0.11:$udp_ext"
  else
    bad "$method: mapped by the wrong method or to the wrong address: $(cat "$out")"
  fi
  n=$(forwards)
  if [ "$n" -ge 2 ]; then ok "$method: the router forwards both ($n dnat rules)"; else bad "$method: $n dnat rules on the router"; fi
  if dial_in "$tcp_ext" "$key" "$work/connect-$method.out"; then
    ok "$method: a peer outside completed a handshake with the host through the TCP mapping"
  else
    bad "$method: connect through the TCP mapping: $(cat "$work/connect-$method.out")"
  fi
  in_ns "$PUB" "$PY" -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(b'hello-$method', ('198.18.0.11', $udp_ext))
"
  for _ in $(seq 50); do [ -s "$work/udp-$method" ] && break; sleep 0.1; done
  if [ "$(cat "$work/udp-$method" 2>/dev/null)" = "hello-$method" ]; then
    ok "$method: a datagram from outside arrived through the UDP mapping"
  else
    bad "$method: no datagram through the UDP mapping"
  fi
  wait "$pm"
  rc=$?
  if [ $rc -eq 0 ] && grep -q '"event":"removing"' "$out" && [ "$(forwards)" -eq 0 ]; then
    ok "$method: the mappings were deleted when the hold ended (no dnat rule left)"
  else
    bad "$method: after the hold (exit $rc), $(forwards) dnat rules left: $(cat "$out")"
  fi
done

# 2. A node with port mapping on: mapped candidates in its connection info,
# reachable from outside, removed at stop.
in_ns "$HOST" timeout 60 "$NODE" info --json --key "$work/node.key" --address 198.19.1.2 \
  --hold 8 > "$work/info.out" 2> "$work/info.err" &
info=$!
pids+=("$info")
if wait_for "$work/info.out" '"kind":"mapped"' 15; then
  mapped_tcp=$(sed -n 's/.*{"transport":"tcp","kind":"mapped","endpoint":"198.18.0.11:\([0-9]*\)"}.*/\1/p' "$work/info.out" | head -1)
  if grep -q '{"transport":"udp","kind":"mapped","endpoint":"198.18.0.11:' "$work/info.out" && [ -n "$mapped_tcp" ]; then
    ok "node: its connection info has mapped TCP and UDP candidates at the router's address"
  else
    bad "node: mapped candidates: $(cat "$work/info.out")"
  fi
  if [ -n "$mapped_tcp" ] && dial_in "$mapped_tcp" "$(node_key "$work/node.key")" "$work/connect-node.out"; then
    ok "node: a peer outside connected to the mapped TCP candidate"
  else
    bad "node: connect to the mapped candidate: $(cat "$work/connect-node.out" 2>/dev/null)"
  fi
else
  bad "node: no mapped candidate: $(cat "$work/info.out" "$work/info.err")"
fi
wait "$info"
none_left "node"

# 3. Port rotation: the TCP mapping follows the listener. The node moves
# to a new random port every 4 s or so (1 s of grace for the old one);
# after its second move the router forwards its current port and neither
# old one, a peer outside connects through the current port's mapping,
# and nothing is left forwarded when the node stops.
echo '{"port_rotation_interval_ms": 4000, "port_rotation_grace_ms": 1000,
  "enable_lan_discovery": false}' > "$work/rotate.json"
in_ns "$HOST" timeout 60 "$NODE" run --json --no-bootstrap --config "$work/rotate.json" \
  --key "$work/node.key" --address 198.19.1.2 --for 25 > "$work/rotate.out" 2> "$work/rotate.err" &
rot=$!
pids+=("$rot")
for _ in $(seq 200); do
  [ "$(grep -c '"event":"ListenerStopped"' "$work/rotate.out")" -ge 2 ] && break
  sleep 0.1
done
first=$(sed -n 's/.*"event":"listening","endpoint":"198.19.1.2:\([0-9]*\)".*/\1/p' "$work/rotate.out" | head -1)
olds=$(sed -n 's/.*"ListenerStopped tcp 198.19.1.2:\([0-9]*\) .*/\1/p' "$work/rotate.out" | head -2)
cur=$(sed -n 's/.*"ListenerStarted tcp 198.19.1.2:\([0-9]*\)".*/\1/p' "$work/rotate.out" | sed -n 2p)
if [ "$(echo "$olds" | wc -w)" -eq 2 ] && [ -n "$cur" ] && [ -n "$first" ] &&
   [ "$(echo "$olds" | head -1)" = "$first" ]; then
  ok "rotation: moved twice ($(echo "$olds" | paste -sd,) closed; now on $cur)"
  wait_for "$work/rotate.out" "\"kind\":\"mapped\",\"protocol\":\"tcp\",\"internal_port\":$cur," 10
  rules=$(in_ns "$RTR" nft list chain inet miniupnpd prerouting_miniupnpd 2>/dev/null)
  stale=0
  for p in $olds; do echo "$rules" | grep -q "198.19.1.2:$p\b" && stale=$((stale + 1)); done
  if echo "$rules" | grep -q "198.19.1.2:$cur\b" && [ $stale -eq 0 ]; then
    ok "rotation: the router forwards the current port, and neither old one"
  else
    bad "rotation: forwards after two moves (current $cur, old $olds): $rules"
  fi
  rot_ext=$(sed -n "s/.*\"kind\":\"mapped\",\"protocol\":\"tcp\",\"internal_port\":$cur,\"external\":\"198.18.0.11:\([0-9]*\)\".*/\1/p" "$work/rotate.out" | head -1)
  if [ -n "$rot_ext" ] && dial_in "$rot_ext" "$(node_key "$work/node.key")" "$work/connect-rot.out"; then
    ok "rotation: a peer outside connected through the moved port's mapping"
  else
    bad "rotation: connect through the moved port's mapping ($rot_ext): $(cat "$work/connect-rot.out" 2>/dev/null)"
  fi
else
  bad "rotation: did not move twice: $(cat "$work/rotate.out" "$work/rotate.err")"
fi
wait "$rot"
none_left "rotation"

# 4. No gateway answers: a clear report for each protocol.
kill -TERM "$MINIUPNPD" 2>/dev/null
wait "$MINIUPNPD" 2>/dev/null
in_ns "$HOST" timeout 30 "$NODE" portmap --udp 4200 --address 198.19.1.2 > "$work/none.out" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q "pcp: nothing listens on 198.19.1.1:5351" "$work/none.out" &&
   grep -q "natpmp: not tried" "$work/none.out" &&
   grep -q "upnp: no UPnP device answered SSDP" "$work/none.out"; then
  ok "no gateway: portmap fails and says why for each protocol"
else
  bad "no gateway (exit $rc): $(cat "$work/none.out")"
fi
sed 's/^/  /' "$work/none.out"

echo "$failures failed"
[ $failures -eq 0 ]
