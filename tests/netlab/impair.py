#!/usr/bin/env python3
"""A UDP relay that impairs what it forwards: delay, jitter (which reorders),
extra reordering, loss and duplication, per datagram, both ways.

This machine's kernel has no netem (CONFIG_NET_SCH_NETEM is off), so the
delay and duplication that netem would add are added here, in user space,
on a real socket path. Loss alone is done in the kernel by nftables (see
utp_netem_test.sh); this relay is for what nftables cannot do.

  impair.py --listen 127.0.0.1:0 --to 127.0.0.1:7000 --delay-ms 25 --jitter-ms 5
            [--reorder 0.05] [--dup 0.05] [--loss 0] [--seconds 300] [--seed 1]

Prints "RELAY <port>" once bound. The first address that sends to the
listening port is the client; datagrams from it go to --to, and what --to
answers goes back to it. Exits after --seconds, or on SIGTERM.
"""
import argparse
import asyncio
import random
import signal
import sys


def endpoint(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class Relay:
    def __init__(self, args, loop):
        self.args = args
        self.loop = loop
        self.rng = random.Random(args.seed)
        self.client = None
        self.front = None  # the listening transport
        self.back = None   # the transport towards --to
        self.counts = {"in": 0, "dropped": 0, "duplicated": 0}

    def schedule(self, send, data):
        a = self.args
        self.counts["in"] += 1
        if self.rng.random() < a.loss:
            self.counts["dropped"] += 1
            return
        copies = 1
        if self.rng.random() < a.dup:
            copies = 2
            self.counts["duplicated"] += 1
        for _ in range(copies):
            delay = a.delay_ms + self.rng.uniform(-a.jitter_ms, a.jitter_ms)
            if self.rng.random() < a.reorder:
                delay += a.delay_ms  # held back: later datagrams overtake it
            self.loop.call_later(max(0.0, delay) / 1000.0, send, data)


class Front(asyncio.DatagramProtocol):
    def __init__(self, relay):
        self.relay = relay

    def datagram_received(self, data, addr):
        r = self.relay
        if r.client is None:
            r.client = addr
        if addr != r.client or r.back is None:
            return
        r.schedule(r.back.sendto, data)


class Back(asyncio.DatagramProtocol):
    def __init__(self, relay):
        self.relay = relay

    def datagram_received(self, data, addr):
        r = self.relay
        if r.client is None:
            return
        r.schedule(lambda d: r.front.sendto(d, r.client), data)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True)
    p.add_argument("--to", required=True)
    p.add_argument("--delay-ms", type=float, default=0)
    p.add_argument("--jitter-ms", type=float, default=0)
    p.add_argument("--reorder", type=float, default=0)
    p.add_argument("--dup", type=float, default=0)
    p.add_argument("--loss", type=float, default=0)
    p.add_argument("--seconds", type=float, default=300)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    loop = asyncio.get_running_loop()
    relay = Relay(args, loop)
    front, _ = await loop.create_datagram_endpoint(lambda: Front(relay),
                                                   local_addr=endpoint(args.listen))
    back, _ = await loop.create_datagram_endpoint(lambda: Back(relay),
                                                  remote_addr=endpoint(args.to))
    for t in (front, back):
        sock = t.get_extra_info("socket")
        import socket
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    relay.front, relay.back = front, back
    print("RELAY %d" % front.get_extra_info("sockname")[1], flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), timeout=args.seconds)
    except asyncio.TimeoutError:
        pass
    print("COUNTS %(in)d in, %(dropped)d dropped, %(duplicated)d duplicated" % relay.counts,
          flush=True)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
