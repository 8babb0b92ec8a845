#!/usr/bin/env bash
# UDP hole punching between two crust-node processes behind two real
# nftables NAT routers, with µTP over the punched path:
#
#   pub    198.18.0.1, .2 on a bridge   the "internet", and two crust-node
#                                       observers both ask (STUN)
#   rtr_a  wan 198.18.0.11, lan 198.19.1.1 ── host_a 198.19.1.2
#   rtr_b  wan 198.18.0.12, lan 198.19.2.1 ── host_b 198.19.2.2
#
# For each pair of NATs, both hosts run `crust-node rendezvous --udp-only`:
# each prepares its connection info (host and reflexive candidates, the
# NAT hint), they swap the files (out of band), punch, and the larger id
# (under multi-socket probing, the side with the sockets) dials µTP over
# the path; one message goes each way. Expected: direct for every pair
# where one side lets the other in (cone with cone, full cone with
# anything), and for a port-restricted cone against a symmetric NAT with
# random ports by multi-socket probing (both orders); no direct path for
# symmetric against symmetric (that takes the relay: matrix_test.sh).
# The matrix is printed. Every process is bounded
# by `timeout` and killed by PID at the end, pass or fail. Needs root;
# exits 77 (skipped) without it. This kernel has no netem, so the times
# are those of veth links (sub-millisecond).
# Usage: punch_test.sh CRUST_NODE_BINARY
set -uo pipefail
NODE=${1:?usage: punch_test.sh CRUST_NODE_BINARY}
if [ "$(id -u)" != 0 ] || ! command -v nft >/dev/null || ! command -v nsenter >/dev/null; then
  echo "SKIP: needs root, nft (nftables) and nsenter"
  exit 77
fi

LAB_NAME=punch LAB_SECONDS=200
# shellcheck source=tests/netlab/lib.sh
. "$(dirname "$0")/lib.sh"

internet 198.18.0.1 198.18.0.2
nat_site "$PUB" 1; RA=$SITE_ROUTER HA=$SITE_HOST
nat_site "$PUB" 2; RB=$SITE_ROUTER HB=$SITE_HOST
# The public side has no route to either LAN: only NAT gets through.

# Two observers at two addresses: with one, the NAT's mapping (and so
# whether multi-socket probing applies) cannot be told.
stun=()
for o in 1 2; do
  "$NODE" id --key "$work/o$o.key" >/dev/null
  nsenter -t "$PUB" -n -- timeout 180 "$NODE" listen --json --key "$work/o$o.key" \
    --address "198.18.0.$o" --port 0 --for 170 > "$work/o$o.out" 2>&1 &
  pids+=($!)
  wait_for "$work/o$o.out" '"listening"' 20 || { echo "FAIL: observer $o did not start"; exit 1; }
  stun+=(--stun "198.18.0.$o:$(sed -n 's/.*"event":"listening".*"udp":"[^"]*:\([0-9]*\)".*/\1/p' "$work/o$o.out" | head -1)")
done
"$NODE" id --key "$work/a.key" >/dev/null
"$NODE" id --key "$work/b.key" >/dev/null

declare -A rule=([cone]="masquerade" [full]="masquerade" [sym]="masquerade fully-random")
declare -A extra=([cone]="" [full]="full" [sym]="")
declare -A label=([cone]="port-restricted cone" [full]="full cone" [sym]="symmetric (random)")
matrix=()

# $1 $2: the NAT in front of host_a and host_b; $3: yes = a direct path expected.
pair() {
  local name="$1-$2"
  nat_router "$RA" 198.19.1.2 "${rule[$1]}" ${extra[$1]}
  nat_router "$RB" 198.19.2.2 "${rule[$2]}" ${extra[$2]}
  rm -f "$work/a.info" "$work/b.info"
  in_ns "$HA" timeout 40 "$NODE" rendezvous --json --key "$work/a.key" --address 198.19.1.2 \
    --info-out "$work/a.info" --peer-info "$work/b.info" --udp-only --wait 30 \
    "${stun[@]}" --message "from a" > "$work/$name.a" 2>&1 &
  local pa=$!
  pids+=("$pa")
  in_ns "$HB" timeout 40 "$NODE" rendezvous --json --key "$work/b.key" --address 198.19.2.2 \
    --info-out "$work/b.info" --peer-info "$work/a.info" --udp-only --wait 30 \
    "${stun[@]}" --message "from b" > "$work/$name.b" 2>&1 &
  local pb=$!
  pids+=("$pb")
  wait "$pa"; wait "$pb"
  local ida idb ms transport connected=no
  ida=$(sed -n 's/.*"connection_id":"\([0-9a-f]*\)".*"event":"rendezvous".*/\1/p' "$work/$name.a")
  idb=$(sed -n 's/.*"connection_id":"\([0-9a-f]*\)".*"event":"rendezvous".*/\1/p' "$work/$name.b")
  transport=$(sed -n 's/.*"transport":"\([a-z]*\)".*"event":"rendezvous".*/\1/p' "$work/$name.a")
  ms=$(sed -n 's/.*"event":"rendezvous","ms":\([0-9.E+-]*\).*/\1/p' "$work/$name.a")
  if [ -n "$ida" ] && [ "$ida" = "$idb" ] && grep -q '"text":"from b"' "$work/$name.a" &&
     grep -q '"text":"from a"' "$work/$name.b"; then
    connected=yes
  fi
  if [ "$connected" = yes ]; then
    matrix+=("$(printf '%-22s %-22s %-9s %-6s %s ms' "${label[$1]}" "${label[$2]}" yes "$transport" "$(printf '%.1f' "$ms")")")
  else
    matrix+=("$(printf '%-22s %-22s %-9s %-6s %s' "${label[$1]}" "${label[$2]}" no - "(relay needed)")")
  fi
  if [ "$connected" = "$3" ]; then
    ok "$name: direct path $connected, as expected"
  else
    bad "$name: direct path $connected, expected $3: $(cat "$work/$name.a" "$work/$name.b")"
  fi
}

pair cone cone yes
pair cone full yes
pair full sym yes
pair sym full yes
pair cone sym yes
pair sym cone yes
pair sym sym no

echo
printf '%-22s %-22s %-9s %-6s %s\n' "host_a behind" "host_b behind" connected via "time to connect"
for row in "${matrix[@]}"; do echo "$row"; done
echo
echo "$failures failed"
[ $failures -eq 0 ]
