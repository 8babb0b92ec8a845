#!/usr/bin/env bash
# The NAT traversal matrix: every pair of NAT types, real crust-node
# processes, a mutual peer on the public side.
#
#   pub    198.18.0.1, .2 on a bridge   the "internet": R (crust-node run,
#                                       the mutual peer and a STUN server),
#                                       O (a second observer) and stund
#                                       (for miniupnpd)
#   rtr_a  wan 198.18.0.11 ── host_a 198.19.1.2     NAT type set per pair
#   rtr_b  wan 198.18.0.12 ── host_b 198.19.2.2     NAT type set per pair
#   rtr_c  wan 198.18.0.13 ── host_c 198.19.3.2     a cone with miniupnpd
#
# NAT types: public (routed, no NAT), full cone, port-restricted cone,
# symmetric with random ports, and the miniupnpd router (UPnP-IGD,
# NAT-PMP, PCP). For each pair, B runs `crust-node run --echo` and
# bootstraps off R; A runs `crust-node reach B --via R`: infos through R,
# a synchronised punch raced against TCP dials, and a relay circuit
# through R when no direct path comes. One message must come back. The
# matrix is printed: connected, path, transport, the time of the whole
# reach call (bootstrap, both infos with their STUN work, the punch) and
# of the rendezvous alone (from both infos in hand to the admitted
# connection; none for the relay, which follows it).
# Expected: every pair connected; a direct path (direct, punched or
# mapped) wherever one side is endpoint-independent, public or mapped;
# for a port-restricted cone against symmetric, through multi-socket
# probing (the cone side opens many sockets, the symmetric side sprays
# checks at random ports); relayed only for symmetric against symmetric.
# Two more rows: symmetric dialling the cone (the roles reversed), and
# cone against cone with TCP only (TCP simultaneous open through both
# NATs).
# Every process is bounded by `timeout` and killed by PID, pass or fail.
# Needs root; exits 77 (skipped) without it. Each router's uplink is
# delayed MATRIX_DELAY_MS (20 by default) each way, so host to host is a
# 4N ms round trip (80 ms) and host to R 2N (40 ms). This kernel has no
# netem (nor fq, nor nftables' queue), so the delay is delay_link.py's
# (two TAP devices and a user-space relay holding every frame N ms;
# lib.sh's nat_site). MATRIX_DELAY_MS=0 uses plain veth links instead
# (sub-millisecond: processing times only).
# Usage: matrix_test.sh CRUST_NODE_BINARY
set -uo pipefail
NODE=${1:?usage: matrix_test.sh CRUST_NODE_BINARY}
if [ "$(id -u)" != 0 ] || ! command -v nft >/dev/null || ! command -v nsenter >/dev/null; then
  echo "SKIP: needs root, nft (nftables) and nsenter"
  exit 77
fi
for b in /usr/sbin/miniupnpd /usr/sbin/stund; do
  [ -x "$b" ] || { echo "FAIL: $b is not installed (.ci/install-deps.sh installs it)"; exit 1; }
done

LAB_NAME=matrix LAB_SECONDS=600 LAB_DELAY_MS=${MATRIX_DELAY_MS:-20}
# shellcheck source=tests/netlab/lib.sh
. "$(dirname "$0")/lib.sh"

internet 198.18.0.1 198.18.0.2
declare -A RTR HOST
in_ns "$PUB" sysctl -qw net.ipv4.ip_forward=1
n=0
for side in a b c; do
  n=$((n + 1))
  nat_site "$PUB" $n
  RTR[$side]=$SITE_ROUTER HOST[$side]=$SITE_HOST
  # Only a public (routed) host is reachable at its own address, and only
  # when its router forwards.
  in_ns "$PUB" ip route add "198.19.$n.0/24" via "198.18.0.1$n"
done
warm_neighbours "$PUB" "${RTR[a]}" "${RTR[b]}" "${RTR[c]}"

# Sets the NAT of side $1 to type $2.
set_nat() {
  local side=$1 type=$2 r=${RTR[$1]} host
  host=$(case $side in a) echo 198.19.1.2 ;; b) echo 198.19.2.2 ;; c) echo 198.19.3.2 ;; esac)
  case $type in
    public)
      in_ns "$r" nft delete table ip crust_nat 2>/dev/null
      in_ns "$r" conntrack -F 2>/dev/null ;;
    full) nat_router "$r" "$host" masquerade full ;;
    cone) nat_router "$r" "$host" masquerade ;;
    sym) nat_router "$r" "$host" "masquerade fully-random" ;;
  esac
}

# rtr_c: a port-restricted cone with miniupnpd.
miniupnpd_router "${RTR[c]}" 198.19.3.2 198.19.3.0/24 "$PUB" 590

# R, the mutual peer, and O, a second STUN observer, on the public side.
for k in r o a b c; do "$NODE" id --key "$work/$k.key" >/dev/null; done
key_of() { "$NODE" id --json --key "$work/$1.key" | sed -n 's/.*"key":"\([0-9a-f]*\)".*/\1/p'; }
id_of() { "$NODE" id --json --key "$work/$1.key" | sed -n 's/.*"id":"\([0-9a-f]*\)".*/\1/p'; }
RKEY=$(key_of r)
nsenter -t "$PUB" -n -- timeout 590 "$NODE" run --json --echo --no-bootstrap --key "$work/r.key" \
  --address 198.18.0.1 --port 5483 --no-port-mapping --for 580 > "$work/r.out" 2>&1 &
pids+=($!)
nsenter -t "$PUB" -n -- timeout 590 "$NODE" listen --json --key "$work/o.key" \
  --address 198.18.0.2 --port 0 --no-port-mapping --for 580 > "$work/o.out" 2>&1 &
pids+=($!)
wait_for "$work/r.out" '"listening"' 20 || { echo "FAIL: R did not start: $(cat "$work/r.out")"; exit 1; }
wait_for "$work/o.out" '"listening"' 20 || { echo "FAIL: O did not start"; exit 1; }
udp_of() { sed -n 's/.*"event":"listening".*"udp":"\([^"]*\)".*/\1/p' "$1" | head -1; }
O_UDP=$(udp_of "$work/o.out")
for k in a b c; do
  cat > "$work/$k.json" <<EOF
{ "hard_coded_contacts": [ { "endpoint": "198.18.0.1:5483", "key": "$RKEY" } ],
  "enable_lan_discovery": false, "stun_servers": [ "$O_UDP" ] }
EOF
done

field() { sed -n "s/.*\"$2\":\\(\"[^\"]*\"\\|[-0-9.eE+]*\\).*/\\1/p" "$1" | head -1 | tr -d '"'; }
name_of() {
  case $1 in
    public) echo "public (no NAT)" ;; full) echo "full cone" ;; cone) echo "port-restricted cone" ;;
    sym) echo "symmetric (random)" ;; upnp) echo "cone + miniupnpd" ;;
  esac
}
rows=()
# One pair: A of type $1 on side $2 reaches B of type $3 on side $4.
# $5: the expected path class, "direct" (not relayed) or "relayed";
# $6: extra flags for `reach` and a tag suffix (e.g. "--tcp-only").
try_pair() {
  local ta=$1 sa=$2 tb=$3 sb=$4 expect=$5 flags=${6:-} tag="$1-$3${6:+$6}"
  [ "$ta" != upnp ] && set_nat "$sa" "$ta"
  [ "$tb" != upnp ] && set_nat "$sb" "$tb"
  local ha=${HOST[$sa]} hb=${HOST[$sb]} aa ab
  aa=$(in_ns "$ha" ip -4 -o addr show dev eth0 | sed -n 's/.* inet \([0-9.]*\)\/.*/\1/p')
  ab=$(in_ns "$hb" ip -4 -o addr show dev eth0 | sed -n 's/.* inet \([0-9.]*\)\/.*/\1/p')
  nsenter -t "$hb" -n -- timeout 60 "$NODE" -vv run --json --echo --key "$work/$sb.key" \
    --config "$work/$sb.json" --address "$ab" --for 50 > "$work/$tag.b.out" 2>&1 &
  local bp=$!
  pids+=("$bp")
  if ! wait_for "$work/$tag.b.out" '"event":"BootstrapConnect"' 20; then
    bad "$tag: B did not bootstrap off R: $(cat "$work/$tag.b.out")"
    kill -TERM "$bp" 2>/dev/null; wait "$bp" 2>/dev/null
    rows+=("$(printf '%-22s %-22s %-9s %-9s %-5s %s' "$(name_of "$ta")" "$(name_of "$tb")" no - - -)")
    return
  fi
  in_ns "$ha" timeout 60 "$NODE" -vv reach "$(id_of "$sb")" --via 198.18.0.1:5483 --via-key "$RKEY" \
    --message "hello $tag" $flags --json --key "$work/$sa.key" --config "$work/$sa.json" \
    --address "$aa" > "$work/$tag.a.out" 2> "$work/$tag.a.err"
  local rc=$?
  kill -TERM "$bp" 2>/dev/null
  wait "$bp" 2>/dev/null
  local path transport ms rv connected=no
  path=$(field "$work/$tag.a.out" path)
  transport=$(field "$work/$tag.a.out" transport)
  ms=$(field "$work/$tag.a.out" connect_ms)
  # The rendezvous alone: from both infos in hand to the admitted connection.
  rv=$(sed -n 's/.*rendezvous with .* after \([0-9.]*\) ms.*/\1/p' "$work/$tag.a.err" | tail -1)
  if [ $rc -eq 0 ] && grep -q '"event":"echoed"' "$work/$tag.a.out"; then connected=yes; fi
  rows+=("$(printf '%-22s %-22s %-9s %-9s %-9s %-12s %s' "$(name_of "$ta")" "$(name_of "$tb")" "$connected" "${path:--}" "${transport:--}" "${ms:+$(printf '%.1f ms' "$ms")}" "${rv:+$rv ms}")")
  if [ $connected != yes ]; then
    bad "$tag: not connected (exit $rc): $(cat "$work/$tag.a.out" "$work/$tag.a.err" | tail -5)"
  elif [ "$expect" = relayed ] && [ "$path" != relayed ]; then
    bad "$tag: expected a relay, got $path"
  elif [ "$expect" = direct ] && [ "$path" = relayed ]; then
    bad "$tag: expected a direct path, got the relay: $(grep -i "rendezvous\|punch" "$work/$tag.a.err" | tail -3)"
  else
    ok "$tag: connected, $path over $transport, message echoed"
  fi
}

# MATRIX_ONLY="cone-sym sym-upnp" runs those pairs only (for debugging,
# with KEEP_LAB=1 to keep the logs).
wanted() { [ -z "${MATRIX_ONLY:-}" ] || [[ " $MATRIX_ONLY " == *" $1 "* ]]; }
types=(public full cone sym)
for i in 0 1 2 3; do
  for j in $(seq $i 3); do
    ta=${types[$i]} tb=${types[$j]} expect=direct
    if [ "$ta" = sym ] && [ "$tb" = sym ]; then expect=relayed; fi
    wanted "$ta-$tb" && try_pair "$ta" a "$tb" b "$expect"
  done
done
for t in public full cone sym; do wanted "$t-upnp" && try_pair "$t" a upnp c direct; done
wanted sym-cone && try_pair sym a cone b direct
wanted cone-cone--tcp-only && try_pair cone a cone b direct --tcp-only

echo
echo "links: ${LAB_DELAY_MS} ms each way per router uplink (host to host round trip $((4 * LAB_DELAY_MS)) ms)"
printf '%-22s %-22s %-9s %-9s %-9s %-12s %s\n' "host_a behind" "host_b behind" connected path transport "reach call" "rendezvous"
for r in "${rows[@]}"; do echo "$r"; done
echo
echo "$failures failed"
[ $failures -eq 0 ]
