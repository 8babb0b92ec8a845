#!/usr/bin/env python3
"""A link with delay, in user space, for kernels without netem.

Opens two TAP devices, A and B, in the namespace it starts in, prints
"ready", and passes every Ethernet frame from one to the other after
`--ms` milliseconds (one way), in order, until `--seconds` pass or it is
sent SIGTERM. The caller moves the devices where it wants them (`ip link
set A netns PID`), renames and addresses them: a TAP device keeps working
across namespaces while this process holds it open, and disappears when
it exits. Frames queued beyond `--queue` per direction are dropped, as a
full router queue would.

    delay_link.py --a tap_x --b tap_y --ms 20 --seconds 300
"""
import argparse
import fcntl
import heapq
import os
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


def open_tap(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True)
    ap.add_argument("--b", required=True)
    ap.add_argument("--ms", type=float, required=True)
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--queue", type=int, default=4096)
    args = ap.parse_args()
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    fa, fb = open_tap(args.a), open_tap(args.b)
    other = {fa: fb, fb: fa}
    delay = args.ms / 1000.0
    end = time.monotonic() + args.seconds
    due = []  # (time, sequence, out fd, frame): the sequence keeps order
    queued = {fa: 0, fb: 0}
    seq = 0
    print("ready", flush=True)
    poller = select.poll()
    poller.register(fa, select.POLLIN)
    poller.register(fb, select.POLLIN)
    while not stop[0]:
        now = time.monotonic()
        if now >= end:
            break
        while due and due[0][0] <= now:
            _, _, out, frame = heapq.heappop(due)
            queued[out] -= 1
            try:
                os.write(out, frame)
            except OSError:
                pass  # the device is down (being moved, or its namespace is gone)
        wait = min(end - now, (due[0][0] - now) if due else 1.0)
        for fd, _ in poller.poll(max(0, int(wait * 1000))):
            for _ in range(64):
                try:
                    frame = os.read(fd, 65536)
                except OSError:  # nothing more to read (EAGAIN), or the device is gone
                    break
                out = other[fd]
                if queued[out] >= args.queue:
                    continue
                seq += 1
                queued[out] += 1
                heapq.heappush(due, (time.monotonic() + delay, seq, out, frame))
    return 0


if __name__ == "__main__":
    sys.exit(main())
