#!/usr/bin/env bash
# examples/chat between two hosts behind two port-restricted cone NATs
# (nftables routers), through a mutual peer R on the public side
# (`crust-node run`): B waits, A asks R to introduce them; each types a
# line and must see the other's. Then two faults: both NATs' conntrack
# tables flushed while idle, and R killed; lines must still pass, once
# each, and neither side loses the other. Every process is bounded by `timeout`
# and stopped by PID; the lab is torn down pass or fail. Needs root;
# exits 77 (skipped) without it.
# Usage: chat_test.sh CRUST_NODE_BINARY CRUST_CHAT_BINARY
set -uo pipefail
NODE=${1:?usage: chat_test.sh CRUST_NODE_BINARY CRUST_CHAT_BINARY}
CHAT=${2:?}
if [ "$(id -u)" != 0 ] || ! command -v nft >/dev/null || ! command -v nsenter >/dev/null; then
  echo "SKIP: needs root, nft (nftables) and nsenter"
  exit 77
fi
LAB_NAME=chat LAB_SECONDS=120
# shellcheck source=tests/netlab/lib.sh
. "$(dirname "$0")/lib.sh"

internet 198.18.0.1
nat_site "$PUB" 1; RA=$SITE_ROUTER HA=$SITE_HOST
nat_site "$PUB" 2; RB=$SITE_ROUTER HB=$SITE_HOST
warm_neighbours "$PUB" "$RA" "$RB"
nat_router "$RA" 198.19.1.2 masquerade
nat_router "$RB" 198.19.2.2 masquerade

"$NODE" id --key "$work/r.key" > /dev/null
rkey=$("$NODE" id --json --key "$work/r.key" | sed -n 's/.*"key":"\([0-9a-f]*\)".*/\1/p')
nsenter -t "$PUB" -n -- timeout 100 "$NODE" run --json --no-bootstrap --key "$work/r.key" \
  --address 198.18.0.1 --port 5483 --no-port-mapping --for 90 > "$work/r.out" 2>&1 &
r_pid=$!
pids+=($r_pid)
wait_for "$work/r.out" '"listening"' 20 || { echo "FAIL: R did not start"; exit 1; }

# Each side's stdin is a FIFO this script holds open, to type into.
mkfifo "$work/a.in" "$work/b.in"
in_ns "$HB" timeout 90 "$CHAT" --via 198.18.0.1:5483 --via-key "$rkey" --address 198.19.2.2 \
  --key "$work/b.key" < "$work/b.in" > "$work/b.out" 2> "$work/b.err" &
pids+=($!)
exec 4> "$work/b.in"
wait_for "$work/b.out" '"event":"ready"' 20 || { echo "FAIL: B did not start: $(cat "$work/b.err")"; exit 1; }
b_id=$(sed -n 's/.*"event":"ready","id":"\([0-9a-f]*\)".*/\1/p' "$work/b.out")
in_ns "$HA" timeout 90 "$CHAT" --via 198.18.0.1:5483 --via-key "$rkey" --address 198.19.1.2 \
  --key "$work/a.key" --to "$b_id" < "$work/a.in" > "$work/a.out" 2> "$work/a.err" &
pids+=($!)
exec 3> "$work/a.in"

if wait_for "$work/a.out" '"event":"connected"' 30 && wait_for "$work/b.out" '"event":"connected"' 10; then
  ok "connected: A $(grep -o '"path":"[a-z]*","transport":"[a-z]*"' "$work/a.out"), B $(grep -o '"path":"[a-z]*","transport":"[a-z]*"' "$work/b.out")"
else
  bad "not connected: A: $(cat "$work/a.out" "$work/a.err" | tail -3); B: $(cat "$work/b.out" "$work/b.err" | tail -3)"
fi
echo "hello from a" >&3
echo "hello from b" >&4
if wait_for "$work/b.out" ": hello from a" 10; then ok "B read A's line"; else bad "B did not get A's line: $(cat "$work/b.out")"; fi
if wait_for "$work/a.out" ": hello from b" 10; then ok "A read B's line"; else bad "A did not get B's line: $(cat "$work/a.out")"; fi
grep -q '"path":"punched"' "$work/a.out" && ok "the path is punched through both NATs" ||
  bad "expected a punched path through two cones: $(grep connected "$work/a.out")"

# Faults survived. Each line must then arrive exactly once.
once() {  # once FILE TEXT WHAT
  if wait_for "$1" ": $2" 15 && [ "$(grep -c ": $2\$" "$1")" = 1 ]; then ok "$3"
  else bad "$3: $(grep -c ": $2" "$1") copies; $(tail -3 "$1")"; fi
}
# 1. Both NATs forget every mapping (conntrack flushed) while the chat is
#    idle: the heartbeats open them again from the inside, as a punch
#    does, and the connection goes on.
in_ns "$RA" conntrack -F 2>/dev/null
in_ns "$RB" conntrack -F 2>/dev/null
sleep 6  # longer than a heartbeat interval (5 s): idle across it
echo "after the flush from a" >&3
echo "after the flush from b" >&4
once "$work/b.out" "after the flush from a" "conntrack flushed on both NATs while idle: B still reads A, once"
once "$work/a.out" "after the flush from b" "conntrack flushed on both NATs while idle: A still reads B, once"
# 2. R, their bootstrap node and mutual peer, dies (SIGKILL, no goodbye):
#    the punched path between A and B does not depend on it.
r_node=$(pgrep -P "$r_pid" | head -1)  # timeout's child: crust-node itself
if [ -n "$r_node" ] && kill -KILL "$r_node"; then ok "R killed"; else bad "R was not running"; fi
sleep 1
echo "after R died from a" >&3
echo "after R died from b" >&4
once "$work/b.out" "after R died from a" "R killed: B still reads A, once"
once "$work/a.out" "after R died from b" "R killed: A still reads B, once"
if grep -q '"event":"lost"' "$work/a.out" "$work/b.out"; then
  bad "a chat lost its peer: $(grep -h lost "$work/a.out" "$work/b.out")"
else
  ok "neither side lost the other through the faults"
fi
exec 3>&- 4>&-  # the end of input ends each chat
echo "$failures failed"
[ $failures -eq 0 ]
