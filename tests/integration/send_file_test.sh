#!/usr/bin/env bash
# examples/send-file end to end on loopback: a 16 MiB file, sent at
# 16 MiB/s; once at least 3 MiB have arrived the receiver is killed
# (SIGKILL, as a crash or a pulled cable would) and started again on the
# same port with the same key. The sender must dial again, resume where
# the part ends (not from 0), and the file must arrive whole: both sides
# check SHA-256, and so does this script. Every process is bounded by
# `timeout` and stopped by PID.
# Usage: send_file_test.sh CRUST_SEND_FILE_BINARY
set -uo pipefail
BIN=${1:?usage: send_file_test.sh CRUST_SEND_FILE_BINARY}
work=$(mktemp -d /tmp/crust-send-file-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
# shellcheck source=tests/support/wait_for.sh
. "$(dirname "$0")/../support/wait_for.sh"  # wait_for FILE PATTERN SECONDS
mkdir -p "$work/out"
head -c $((16 << 20)) /dev/urandom > "$work/big.bin"
want=$(sha256sum "$work/big.bin" | cut -d' ' -f1)

receiver() {  # port (0: any), output file
  timeout 60 "$BIN" receive --dir "$work/out" --address 127.0.0.1 --port "$1" \
    --key "$work/receiver.key" --once > "$2" 2> "$2.err" &
  RECEIVER=$!
  pids+=("$RECEIVER")
  wait_for "$2" '"event":"listening"' 20 || fail "the receiver did not start: $(cat "$2" "$2.err")"
}
receiver 0 "$work/r1.out"
endpoint=$(sed -n 's/.*"endpoint":"\([^"]*\)".*/\1/p' "$work/r1.out")
key=$(sed -n 's/.*"key":"\([0-9a-f]*\)".*/\1/p' "$work/r1.out")
port=${endpoint##*:}

timeout 60 "$BIN" send "$work/big.bin" "$endpoint" --peer "$key" --key "$work/sender.key" \
  --retry-for 40 --limit 16 > "$work/s.out" 2> "$work/s.err" &
sender=$!
pids+=("$sender")

# Kill the receiver once a few MiB are in.
part="$work/out/big.bin.part"
deadline=$((SECONDS + 20))
while [ $SECONDS -lt $deadline ]; do
  size=$(stat -c %s "$part" 2>/dev/null || echo 0)
  [ "$size" -ge $((3 << 20)) ] && break
  sleep 0.02
done
[ "${size:-0}" -ge $((3 << 20)) ] || fail "nothing arrived: $(cat "$work/s.err")"
# The receiver itself, not the `timeout` that runs it.
for child in $(pgrep -P "$RECEIVER"); do kill -KILL "$child"; done
wait "$RECEIVER" 2>/dev/null
echo "ok: the receiver was killed with $size bytes of 16 MiB in"
sleep 0.5
receiver "$port" "$work/r2.out"

wait "$sender"
rc=$?
[ $rc -eq 0 ] || fail "the sender exited $rc: $(tail -5 "$work/s.err") $(cat "$work/s.out")"
grep -q '"ok":true' "$work/s.out" || fail "the sender did not hear the file verified: $(cat "$work/s.out")"
wait_for "$work/r2.out" '"event":"received"' 10 || fail "the receiver did not report the file"
resumed=$(sed -n 's/.*"resumed_from":\([0-9]*\).*/\1/p' "$work/r2.out")
[ -n "$resumed" ] && [ "$resumed" -gt 0 ] || fail "the transfer did not resume: $(cat "$work/r2.out")"
echo "ok: resumed at byte $resumed, not 0 ($(grep -c 'resuming at' "$work/s.err") resume(s) on the sender)"
grep -q '"ok":true' "$work/r2.out" || fail "the receiver's SHA-256 check failed: $(cat "$work/r2.out")"
got=$(sha256sum "$work/out/big.bin" | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "the file differs: $got, not $want"
[ ! -e "$part" ] || fail "the part file is left behind"
echo "ok: 16 MiB arrived whole (SHA-256 $want); $(sed -n 's/.*"mib_per_s":\([0-9.]*\).*/\1/p' "$work/s.out") MiB/s after the resume"
echo "0 failed"
