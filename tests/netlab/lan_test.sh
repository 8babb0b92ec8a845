#!/usr/bin/env bash
# LAN discovery, bootstrap and live whitelist edits between real network
# namespaces on one bridge (198.19.1.0/24, inside RFC 2544 space):
#
#   h1 198.19.1.1  crust-node run, network "lab", whitelist from a file
#   h2 198.19.1.2  crust-node run, network "other" (must never answer)
#   h3 198.19.1.3  asks the LAN, then runs a node that bootstraps off h1
#   h4 198.19.1.4  refused by h1's whitelist until the file is edited
#   h5 IPv6 only   asks over ff02::114, then bootstraps off h6
#   h6 IPv6 only   crust-node run on [::], network "lab"
# and h4 asks h1's UDP socket for its address over STUN.
#
# The namespaces are held by `sleep` processes made with unshare (nothing
# under /run/netns); every process is bounded by `timeout` or `sleep` and
# killed by PID at the end, pass or fail. Needs root; exits 77 (skipped)
# without it. Usage: lan_test.sh CRUST_NODE_BINARY
set -uo pipefail
NODE=${1:?usage: lan_test.sh CRUST_NODE_BINARY}
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null || ! command -v nsenter >/dev/null; then
  echo "SKIP: needs root, iproute2 and nsenter"
  exit 77
fi

LAB_NAME=lan
# shellcheck source=tests/netlab/lib.sh
. "$(dirname "$0")/lib.sh"

new_ns; switch=$NS
# No multicast snooping: with no MLD querier in the lab the bridge should
# simply flood ff02::114.
in_ns "$switch" ip link add br0 type bridge mcast_snooping 0
in_ns "$switch" ip link set br0 up
declare -A host
for i in 1 2 3 4 5 6; do
  new_ns; host[$i]=$NS
  # Link-local IPv6 addresses usable at once (no duplicate detection wait).
  in_ns "${host[$i]}" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
  in_ns "$switch" ip link add "v$i" type veth peer name eth0 netns "${host[$i]}"
  in_ns "$switch" ip link set "v$i" master br0 up
  in_ns "${host[$i]}" ip link set lo up
  # h5 and h6 have no IPv4 address: only IPv6 multicast can find them.
  [ "$i" -le 4 ] && in_ns "${host[$i]}" ip addr add "198.19.1.$i/24" broadcast 198.19.1.255 dev eth0
  in_ns "${host[$i]}" ip link set eth0 up
done

id_of() { "$NODE" id --json --key "$work/$1.key" | sed -n 's/.*"id":"\([0-9a-f]*\)".*/\1/p'; }
key_of() { "$NODE" id --json --key "$work/$1.key" | sed -n 's/.*"key":"\([0-9a-f]*\)".*/\1/p'; }
id1=$(id_of h1); id2=$(id_of h2); key1=$(key_of h1)

echo '{ "whitelisted_node_ips": ["198.19.1.3"] }' > "$work/h1.json"
nsenter -t "${host[1]}" -n -- timeout 120 "$NODE" run --json --key "$work/h1.key" --config "$work/h1.json" \
  --network lab --address 0.0.0.0 --port 5483 --for 110 > "$work/h1.out" 2>&1 &
pids+=($!)
nsenter -t "${host[2]}" -n -- timeout 120 "$NODE" run --json --key "$work/h2.key" \
  --network other --address 0.0.0.0 --port 5483 --for 110 > "$work/h2.out" 2>&1 &
pids+=($!)
wait_for "$work/h1.out" '"listening"' 20 || { echo "h1 did not start"; cat "$work/h1.out"; exit 1; }
wait_for "$work/h2.out" '"listening"' 20 || { echo "h2 did not start"; exit 1; }

# 1. Asking the LAN finds h1 and not h2 (another network).
in_ns "${host[3]}" timeout 20 "$NODE" lan --json --key "$work/h3.key" --network lab --window 1000 \
  > "$work/lan.out" 2>&1
if grep -q "\"id\":\"$id1\"" "$work/lan.out"; then ok "LAN discovery finds the lab node"; else bad "LAN discovery missed h1: $(cat "$work/lan.out")"; fi
if grep -q "\"id\":\"$id2\"" "$work/lan.out"; then bad "a node of another network answered"; else ok "the other network's node stays silent"; fi

# 2. h3 bootstraps off the LAN, with h2 (another network) also named as a
#    contact: that handshake fails and the bootstrap still succeeds.
echo '{ "hard_coded_contacts": ["198.19.1.2:5483"] }' > "$work/h3.json"
nsenter -t "${host[3]}" -n -- timeout 100 "$NODE" run --json --key "$work/h3.key" --config "$work/h3.json" \
  --network lab --address 0.0.0.0 --port 5483 --for 90 > "$work/h3.out" 2>&1 &
pids+=($!)
if wait_for "$work/h3.out" "BootstrapConnect $(echo "$id1" | cut -c1-8)" 20; then ok "h3 bootstrapped off h1 over the LAN"; else bad "h3 did not bootstrap: $(cat "$work/h3.out")"; fi
if wait_for "$work/h1.out" 'BootstrapAccept' 10; then ok "h1 accepted h3"; else bad "h1 shows no BootstrapAccept"; fi

# 3. h4 is not on h1's whitelist: refused.
if in_ns "${host[4]}" timeout 30 "$NODE" connect 198.19.1.1:5483 --peer "$key1" --network lab \
     --key "$work/h4.key" > "$work/h4a.out" 2>&1; then
  bad "h4 connected although h1's whitelist does not name it"
else
  if grep -q "does not admit us" "$work/h4a.out"; then ok "h4 refused by the whitelist, and told why"; else bad "h4 failed for another reason: $(cat "$work/h4a.out")"; fi
fi

# 4. Edit h1's file on the running node: h4 in, h3 out.
echo '{ "whitelisted_node_ips": ["198.19.1.4"] }' > "$work/h1.json"
if wait_for "$work/h1.out" 'LostPeer' 10; then ok "h1 dropped h3 after the edit"; else bad "h1 kept h3 after the edit"; fi
if wait_for "$work/h3.out" 'LostPeer.*does not admit us\|LostPeer.*no longer whitelisted' 10; then ok "h3 was told it is no longer admitted"; else bad "h3 was not told: $(cat "$work/h3.out")"; fi
if in_ns "${host[4]}" timeout 30 "$NODE" connect 198.19.1.1:5483 --peer "$key1" --network lab \
     --key "$work/h4.key" > "$work/h4b.out" 2>&1; then
  ok "h4 connects once the edited whitelist names it"
else
  bad "h4 still refused after the edit: $(cat "$work/h4b.out")"
fi

# 5. IPv6 multicast: h5 has no IPv4 address, so broadcast cannot reach it.
#    It finds h1 over ff02::114; h1 listens on IPv4 only and so names its
#    IPv4 address on that link.
in_ns "${host[5]}" timeout 20 "$NODE" lan --json --key "$work/h5.key" --network lab --window 1000 \
  > "$work/lan6.out" 2>&1
if grep -q "\"id\":\"$id1\".*198.19.1.1:5483" "$work/lan6.out"; then ok "an IPv6-only host finds h1 over ff02::114, at its IPv4 address"; else bad "IPv6 discovery missed h1: $(cat "$work/lan6.out")"; fi
if grep -q "\"id\":\"$id2\"" "$work/lan6.out"; then bad "a node of another network answered over IPv6"; else ok "the other network's node stays silent over IPv6 too"; fi

# 6. h6 listens on [::] with no IPv4 at all: h5 bootstraps off it over the
#    LAN, dialling the link-local address its answer came from (h1's IPv4
#    endpoint is unreachable from h5 and loses the race).
id6=$(id_of h6)
nsenter -t "${host[6]}" -n -- timeout 60 "$NODE" run --json --key "$work/h6.key" \
  --network lab --address :: --port 5483 --for 50 > "$work/h6.out" 2>&1 &
pids+=($!)
wait_for "$work/h6.out" '"listening"' 20 || bad "h6 did not start: $(cat "$work/h6.out")"
in_ns "${host[5]}" timeout 40 "$NODE" bootstrap --json --key "$work/h5.key" --network lab \
  > "$work/boot6.out" 2>&1
if grep -q "\"ok\":true" "$work/boot6.out" && grep -q "$id6" "$work/boot6.out" && grep -q 'fe80::' "$work/boot6.out"; then
  ok "an IPv6-only host bootstraps off an IPv6-only node found by multicast"
else
  bad "IPv6-only bootstrap failed: $(cat "$work/boot6.out")"
fi

# 7. A bootstrap node answers STUN on its UDP socket: h4 learns its
#    address from h1 (what NAT traversal will ask of bootstrap nodes).
udp1=$(sed -n 's/.*"event":"listening".*"udp":"[^"]*:\([0-9]*\)".*/\1/p' "$work/h1.out" | head -1)
if [ -n "$udp1" ] && in_ns "${host[4]}" timeout 20 "$NODE" stun --json "198.19.1.1:$udp1" \
     > "$work/stun.out" 2>&1 && grep -q '"mapped":"198.19.1.4:' "$work/stun.out"; then
  ok "h1 (crust-node run) answers STUN: h4 is told 198.19.1.4"
else
  bad "no STUN answer from h1 (udp port '$udp1'): $(cat "$work/stun.out" 2>/dev/null)"
fi

echo "$failures failed"
[ $failures -eq 0 ]
