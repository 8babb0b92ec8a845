# Shared by the network-lab scripts: a work folder, PIDs to clean up, and
# namespaces held by sleeping processes (nothing under /run/netns). Source
# it after setting LAB_NAME; it sets `work`, `pids`, `failures` and traps
# EXIT. Every process a script starts goes into `pids` and is stopped by
# PID: SIGTERM first (`timeout` passes it on to what it runs, which stops
# cleanly), then SIGKILL to what is left, children first.
work=$(mktemp -d "/tmp/crust-${LAB_NAME:-lab}-XXXXXX")
pids=()
failures=0
cleanup() {
  local p c
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 30); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do
    for c in $(pgrep -P "$p" 2>/dev/null); do kill -9 "$c" 2>/dev/null; done
    kill -9 "$p" 2>/dev/null
  done
  wait 2>/dev/null
  if [ -n "${KEEP_LAB:-}" ]; then echo "lab files kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; failures=$((failures + 1)); }
in_ns() { local p=$1; shift; nsenter -t "$p" -n -- "$@"; }

# A network namespace held by a process sleeping ${LAB_SECONDS:-240} s;
# prints nothing, sets NS.
new_ns() {
  unshare --net -- sleep "${LAB_SECONDS:-240}" &
  NS=$!
  pids+=("$NS")
  local mine
  mine=$(readlink /proc/self/ns/net)
  for _ in $(seq 100); do
    [ "$(readlink "/proc/$NS/ns/net" 2>/dev/null)" != "$mine" ] && return 0
    sleep 0.02
  done
  echo "cannot create a network namespace"
  exit 1
}

# Waits up to $3 seconds for a line matching $2 in file $1.
wait_for() {
  local deadline=$((SECONDS + $3))
  while [ $SECONDS -lt $deadline ]; do
    grep -q -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# An nftables NAT on router namespace $1 (interfaces wan0 and lan0) for
# the host $2 behind it: $3 is the masquerade statement ("masquerade" is a
# port-preserving cone, "masquerade fully-random" symmetric with random
# ports); $4 = "full" makes it a full cone (new inbound UDP is sent on to
# the host, as a DMZ does). Forwarded traffic from outside is otherwise
# dropped unless conntrack knows it (a reply), as a home router does;
# so is unsolicited inbound to the router itself. That matters for
# punching: a peer's check that arrives before our first one left would
# otherwise be taken in by the router, and its conntrack entry would take
# the tuple our outbound mapping needs, so masquerade would give that
# mapping another port (the lab saw cone against cone fail that way).
# Replaces the router's previous rules and forgets its mappings.
nat_router() {
  local ns=$1 host=$2 masq=$3 pre="" dnat_ok=""
  if [ "${4:-}" = full ]; then
    pre="chain pre { type nat hook prerouting priority -100; iifname \"wan0\" udp dport 1024-65535 dnat to $host; }"
    dnat_ok='ct status dnat accept'
  fi
  in_ns "$ns" nft delete table ip crust_nat 2>/dev/null
  in_ns "$ns" conntrack -F 2>/dev/null
  in_ns "$ns" nft -f - <<EOF
table ip crust_nat {
  chain post { type nat hook postrouting priority 100; oifname "wan0" $masq; }
  $pre
  chain forward { type filter hook forward priority 0; policy drop;
    ct state established,related accept
    $dnat_ok
    iifname "lan0" oifname "wan0" accept
  }
  chain input { type filter hook input priority 0;
    iifname "wan0" ct state new drop
  }
}
EOF
}
