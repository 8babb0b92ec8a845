#!/usr/bin/env python3
"""Gathers one suite run's JSON files into one report.

    report.py DIR PREFIX

reads DIR/PREFIX-{throughput,handshake,memory,connect,punch,utp}.json
(whichever exist), writes DIR/PREFIX.json (all of them, with every
scenario's ratio and goal), DIR/PREFIX.md (the table) and, with gnuplot,
DIR/PREFIX-throughput.png, and prints the table. A scenario whose file is
missing is listed as not measured, never as met.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys

d, prefix = sys.argv[1], sys.argv[2]


def load(name):
    p = os.path.join(d, f"{prefix}-{name}.json")
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return json.load(f)


def med(v):
    return statistics.median(v) if v else None


rows = []  # (scenario, crust, baseline, ratio text, goal text, met: True/False/None)


def row(scenario, crust, baseline, ratio, goal, met):
    rows.append({"scenario": scenario, "crust": crust, "baseline": baseline,
                 "ratio": ratio, "goal": goal, "met": met})


tp = load("throughput")
if tp:
    for r in tp["rows"]:
        size = r["size"]
        label = f"{size // 1024} KiB" if size >= 1024 else f"{size} B"
        if size >= 1 << 20:
            label = f"{size >> 20} MiB"
        at64k = size == 64 * 1024
        row(f"stream, {label} messages, vs raw TCP", f"{r['crust_mbps']:.0f} MB/s",
            f"{r['raw_mbps']:.0f} MB/s", r["ratio_raw"], "≥ 0.75 at 64 KiB" if at64k else "",
            r["ratio_raw"] >= 0.75 if at64k else None)
        if "ratio_bound" in r:
            row(f"stream, {label} messages, vs raw TCP with the AEAD's cost added "
                f"(AEAD alone {r['aead_mbps']:.0f} MB/s)", f"{r['crust_mbps']:.0f} MB/s",
                f"{r['bound_mbps']:.0f} MB/s", r["ratio_bound"], "", None)
        row(f"stream, {label} messages, vs TLS 1.3 ChaCha20-Poly1305", f"{r['crust_mbps']:.0f} MB/s",
            f"{r['tls_chacha_mbps']:.0f} MB/s", r["ratio_tls_chacha"],
            "≥ 1.1 at 64 KiB" if at64k else "", r["ratio_tls_chacha"] >= 1.1 if at64k else None)
        row(f"stream, {label} messages, vs TLS 1.3 AES-256-GCM", f"{r['crust_mbps']:.0f} MB/s",
            f"{r['tls_aes_mbps']:.0f} MB/s", r["ratio_tls_aes"],
            "≥ 1.1 at 64 KiB" if at64k else "", r["ratio_tls_aes"] >= 1.1 if at64k else None)
        if size == 64:
            row("64 B messages per second, one connection, vs raw TCP",
                f"{r['crust_msgs_per_s']:.0f}/s", f"{r['raw_msgs_per_s']:.0f}/s", r["ratio_raw"],
                "≥ 0.5", r["ratio_raw"] >= 0.5)
else:
    row("stream throughput", "not measured", "", None, "", None)

hs = load("handshake")
if hs:
    row("handshakes per second per core, vs OpenSSL's bound (2 keygen + 6 DH + 2 sign + 2 verify)",
        f"{hs['crust_handshakes_per_s']:.0f}/s", f"{hs['bound_handshakes_per_s']:.0f}/s",
        hs["ratio_bound"], "≥ 0.7", hs["ratio_bound"] >= 0.7)
else:
    row("handshakes per second", "not measured", "", None, "≥ 0.7", None)

mem = load("memory")
if mem:
    for r in mem["rows"]:
        kib = r["heap_bytes_per_connection"] / 1024
        row(f"user-space memory per idle connection, {r['connections']} connections",
            f"{kib:.1f} KiB", "", None, "≤ 16 KiB", kib <= 16)
else:
    row("memory per idle connection", "not measured", "", None, "≤ 16 KiB", None)

cn = load("connect")
if cn:
    row(f"connect + first round trip, {cn['link_delay_ms_each_way']:.0f} ms each way, in RTTs, "
        "vs TCP + TLS 1.3", f"{cn['crust_rtts']:.2f} RTT", f"{cn['tls_rtts']:.2f} RTT",
        cn["crust_rtts"] / cn["tls_rtts"], "≤ TLS 1.3's (whole round trips)",
        round(cn["crust_rtts"]) <= round(cn["tls_rtts"]))
else:
    row("connect + first round trip", "not measured (needs root)", "", None, "≤ TLS 1.3's", None)

ut = load("utp")
if ut:
    lo = ut["loopback"]
    u, t, lib = med(lo["utp_mbps"]), med(lo["tcp_mbps"]), med(lo["libutp_mbps"])
    row("µTP throughput, loopback, vs TCP (same harness)", f"{u:.0f} MB/s", f"{t:.0f} MB/s",
        u / t, "≥ 0.6", u / t >= 0.6)
    row("µTP throughput, loopback, vs libutp (utp-native)", f"{u:.0f} MB/s", f"{lib:.0f} MB/s",
        u / lib, "≥ 2", u / lib >= 2)
    lu, lt = med(ut["loss_1pct"]["utp_mbps"]), med(ut["loss_1pct"]["tcp_mbps"])
    if lu and lt:
        row("µTP throughput, 1 % loss each way (no added delay), vs TCP", f"{lu:.0f} MB/s",
            f"{lt:.0f} MB/s", lu / lt, "", None)
    d50 = ut.get("rtt50_loss_1pct", {})
    du, dt = med(d50.get("utp_mbps", [])), med(d50.get("tcp_mbps", []))
    if du and dt:
        row("µTP throughput, 50 ms RTT and 1 % loss each way, vs TCP", f"{du:.2f} MB/s",
            f"{dt:.2f} MB/s", du / dt, "≥ 0.8", du / dt >= 0.8)
else:
    row("µTP throughput", "not measured", "", None, "", None)

pu = load("punch")
if pu:
    for pair, v in pu["pairs"].items():
        r = med(v) / pu["rtt_ms"]
        row(f"direct connection through two {pair} NATs, from both infos in hand",
            f"{med(v):.0f} ms = {r:.2f} RTT", f"RTT {pu['rtt_ms']:.0f} ms", r, "≤ 3 RTT", r <= 3)
else:
    row("hole-punch time", "not measured (needs root)", "", None, "≤ 3 RTT", None)


def fmt_ratio(r):
    return "" if r is None else f"{r:.2f}"


def fmt_met(m):
    return {True: "met", False: "**missed**", None: ""}[m]


lines = ["| scenario | Crust | baseline | ratio | goal | |", "|---|---:|---:|---:|---|---|"]
for r in rows:
    lines.append(f"| {r['scenario']} | {r['crust']} | {r['baseline']} | {fmt_ratio(r['ratio'])} "
                 f"| {r['goal']} | {fmt_met(r['met'])} |")
table = "\n".join(lines)
with open(os.path.join(d, f"{prefix}.md"), "w") as f:
    f.write(f"# Crust benchmarks, {prefix}\n\n{table}\n")
with open(os.path.join(d, f"{prefix}.json"), "w") as f:
    json.dump({"date": prefix, "scenarios": rows,
               "runs": {n: load(n) for n in
                        ("throughput", "handshake", "memory", "connect", "punch", "utp")}},
              f, indent=1)
print(table)

if tp and shutil.which("gnuplot"):
    dat = os.path.join(d, f"{prefix}-throughput.dat")
    with open(dat, "w") as f:
        for r in tp["rows"]:
            f.write(f"{r['size']} {r['raw_mbps']} {r['crust_mbps']} {r['tls_chacha_mbps']} "
                    f"{r['tls_aes_mbps']}\n")
    png = os.path.join(d, f"{prefix}-throughput.png")
    script = f"""
set terminal pngcairo size 900,560
set output '{png}'
set title 'Stream throughput on loopback, {prefix} (medians)'
set logscale x 2
set offsets graph 0.05, graph 0.05, 0, 0
set xtics ('64 B' 64, '1 KiB' 1024, '16 KiB' 16384, '64 KiB' 65536, '1 MiB' 1048576)
set yrange [0:*]
set xlabel 'message size'
set ylabel 'MB/s'
set key top left
set grid
plot '{dat}' using 1:2 with linespoints title 'raw TCP', \\
     '' using 1:3 with linespoints title 'Crust', \\
     '' using 1:4 with linespoints title 'TLS 1.3 ChaCha20-Poly1305', \\
     '' using 1:5 with linespoints title 'TLS 1.3 AES-256-GCM'
"""
    subprocess.run(["gnuplot"], input=script.encode(), check=True)
    os.remove(dat)
    print(f"\nplot: {png}")
