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

# The "internet": a namespace with bridge br0 holding each address given
# (198.18.0.x, /24); sets PUB.
internet() {
  new_ns; PUB=$NS
  in_ns "$PUB" ip link add br0 type bridge
  local a
  for a in "$@"; do in_ns "$PUB" ip addr add "$a/24" dev br0; done
  in_ns "$PUB" ip link set lo up
  in_ns "$PUB" ip link set br0 up
}

# wait_for FILE PATTERN SECONDS
# shellcheck source=tests/support/wait_for.sh
. "$(dirname "${BASH_SOURCE[0]}")/../support/wait_for.sh"

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

# A port-restricted cone on router namespace $1 (wan0, lan0) for host $2
# that runs miniupnpd (UPnP-IGD, NAT-PMP, PCP) for LAN $3 (a /24) and
# lets in what miniupnpd forwards (DNAT). miniupnpd's WAN address is a
# reserved one, so it learns its public address from stund, started here
# in the public namespace $4 on 198.18.0.1 and .2 (the router lets in
# its answers, which come from several ports and both addresses). $5:
# how long both may run, in seconds. Returns once miniupnpd listens;
# exits the script if it does not. Sets MINIUPNPD (its PID).
miniupnpd_router() {
  local rtr=$1 host=$2 lan=$3 pub=$4 seconds=$5
  nat_router "$rtr" "$host" masquerade
  in_ns "$rtr" nft add rule ip crust_nat forward ct status dnat accept
  in_ns "$rtr" nft insert rule ip crust_nat input ip saddr 198.18.0.1-198.18.0.2 udp sport 3478-3479 accept
  # Debian's nft_init.sh is broken: miniupnpd's table and chains, made
  # here and named in its config.
  in_ns "$rtr" nft -f - <<'NFT'
table inet miniupnpd {
  chain forward { type filter hook forward priority 0; policy accept; jump miniupnpd; }
  chain miniupnpd { }
  chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }
  chain prerouting_miniupnpd { }
  chain postrouting { type nat hook postrouting priority 100; policy accept; jump postrouting_miniupnpd; }
  chain postrouting_miniupnpd { }
}
NFT
  nsenter -t "$pub" -n -- timeout "$seconds" /usr/sbin/stund -h 198.18.0.1 -a 198.18.0.2 \
    > "$work/stund.out" 2>&1 &
  pids+=($!)
  cat > "$work/miniupnpd.conf" <<CONF
ext_ifname=wan0
listening_ip=lan0
port=5000
enable_natpmp=yes
enable_upnp=yes
secure_mode=yes
system_uptime=yes
notify_interval=60
uuid=3c1b2f0e-1111-4222-8333-944455556666
ext_perform_stun=yes
ext_stun_host=198.18.0.1
ext_stun_port=3478
upnp_table_name=miniupnpd
upnp_nat_table_name=miniupnpd
upnp_forward_chain=miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
allow 1024-65535 $lan 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
CONF
  sleep 0.3  # stund's sockets
  nsenter -t "$rtr" -n -- timeout "$seconds" /usr/sbin/miniupnpd -d -f "$work/miniupnpd.conf" \
    -P "$work/miniupnpd.pid" > "$work/miniupnpd.out" 2>&1 &
  MINIUPNPD=$!
  pids+=("$MINIUPNPD")
  if ! wait_for "$work/miniupnpd.out" 'Listening for NAT-PMP/PCP traffic' 30; then
    echo "FAIL: miniupnpd did not start: $(tail -20 "$work/miniupnpd.out")"
    exit 1
  fi
}

# Site $2 (1, 2, ...) on the "internet" bridge br0 of namespace $1: a
# router namespace (wan0 198.18.0.1$2/24 on the bridge as port wan_$2,
# lan0 198.19.$2.1/24, forwarding, default route via 198.18.0.1) and a
# host namespace behind it (eth0 198.19.$2.2/24, default route via the
# router). No NAT yet: see nat_router. With LAB_DELAY_MS set (and not
# 0), the uplink goes through delay_link.py (two TAP devices and a
# user-space relay holding every frame that long; this kernel has no
# netem) instead of a veth. Sets SITE_ROUTER and SITE_HOST (namespace
# PIDs).
nat_site() {
  local pub=$1 n=$2
  new_ns; SITE_ROUTER=$NS
  new_ns; SITE_HOST=$NS
  local r=$SITE_ROUTER h=$SITE_HOST
  if [ "${LAB_DELAY_MS:-0}" = 0 ]; then
    in_ns "$pub" ip link add "wan_$n" type veth peer name wan0 netns "$r"
  else
    # Made inside the public namespace, so no device ever shows in the
    # host's; one end then moves to the router.
    local tp="dl$$-${n}p" tr="dl$$-${n}r"
    nsenter -t "$pub" -n -- timeout "${LAB_SECONDS:-240}" \
      python3 "$(dirname "${BASH_SOURCE[0]}")/delay_link.py" \
      --a "$tp" --b "$tr" --ms "$LAB_DELAY_MS" --seconds "${LAB_SECONDS:-240}" \
      > "$work/delay_$n.out" 2>&1 &
    pids+=($!)
    wait_for "$work/delay_$n.out" ready 10 || { echo "FAIL: delay_link.py did not start"; exit 1; }
    in_ns "$pub" ip link set "$tr" netns "$r"
    in_ns "$pub" ip link set "$tp" name "wan_$n"
    in_ns "$r" ip link set "$tr" name wan0
  fi
  in_ns "$pub" ip link set "wan_$n" master br0 up
  in_ns "$r" ip link add lan0 type veth peer name eth0 netns "$h"
  in_ns "$r" ip addr add "198.18.0.1$n/24" dev wan0
  in_ns "$r" ip addr add "198.19.$n.1/24" dev lan0
  in_ns "$h" ip addr add "198.19.$n.2/24" dev eth0
  for ns in "$r" "$h"; do in_ns "$ns" ip link set lo up; done
  in_ns "$r" ip link set wan0 up
  in_ns "$r" ip link set lan0 up
  in_ns "$h" ip link set eth0 up
  in_ns "$h" ip route add default via "198.19.$n.1"
  in_ns "$r" ip route add default via 198.18.0.1
  in_ns "$r" sysctl -qw net.ipv4.ip_forward=1
}

# The "internet" is one bridge, so its routers would ARP for each other
# on the first packet between two sites: one more round trip over a
# delayed link, which a real path (warm, and routed) does not pay, and
# which a punch's first checks then lose. This gives namespace $1 (br0,
# at 198.18.0.1 and .2) and the routers $2... (wan0 on the bridge)
# permanent neighbour entries for one another.
warm_neighbours() {
  local pub=$1 r o
  shift
  mac_of() { in_ns "$1" ip -o link show "$2" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p'; }
  addr_of() { in_ns "$1" ip -4 -o addr show dev "$2" | sed -n 's/.* inet \([0-9.]*\)\/.*/\1/p' | head -1; }
  local br; br=$(mac_of "$pub" br0)
  for r in "$@"; do
    in_ns "$pub" ip neigh replace "$(addr_of "$r" wan0)" lladdr "$(mac_of "$r" wan0)" dev br0 nud permanent
    for a in 198.18.0.1 198.18.0.2; do
      in_ns "$r" ip neigh replace "$a" lladdr "$br" dev wan0 nud permanent
    done
    for o in "$@"; do
      [ "$o" = "$r" ] && continue
      in_ns "$r" ip neigh replace "$(addr_of "$o" wan0)" lladdr "$(mac_of "$o" wan0)" dev wan0 nud permanent
    done
  done
}
