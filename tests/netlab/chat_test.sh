#!/usr/bin/env bash
# examples/chat between two hosts behind two port-restricted cone NATs
# (nftables routers), through a mutual peer R on the public side
# (`crust-node run`): B waits, A asks R to introduce them; each types a
# line and must see the other's. Every process is bounded by `timeout`
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
pids+=($!)
wait_for "$work/r.out" '"listening"' 20 || { echo "FAIL: R did not start"; exit 1; }

# Each side's stdin is a FIFO this script holds open, to type into.
mkfifo "$work/a.in" "$work/b.in"
in_ns "$HB" timeout 60 "$CHAT" --via 198.18.0.1:5483 --via-key "$rkey" --address 198.19.2.2 \
  --key "$work/b.key" < "$work/b.in" > "$work/b.out" 2> "$work/b.err" &
pids+=($!)
exec 4> "$work/b.in"
wait_for "$work/b.out" '"event":"ready"' 20 || { echo "FAIL: B did not start: $(cat "$work/b.err")"; exit 1; }
b_id=$(sed -n 's/.*"event":"ready","id":"\([0-9a-f]*\)".*/\1/p' "$work/b.out")
in_ns "$HA" timeout 60 "$CHAT" --via 198.18.0.1:5483 --via-key "$rkey" --address 198.19.1.2 \
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
exec 3>&- 4>&-  # the end of input ends each chat
echo "$failures failed"
[ $failures -eq 0 ]
