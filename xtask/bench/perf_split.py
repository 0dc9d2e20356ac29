#!/usr/bin/env python3
"""Splits a system-wide `perf record` of a bench row by process and by kind
of work: what `cargo xtask bench --perf` writes next to each row's
`row-N.data` as `row-N.txt`, and what README.md's "what limits it" quotes.

Usage: perf_split.py ROW.data [PROCESS ...]
  ONLY_WITH=RE, ONLY_WITHOUT=RE
           keep only the 100 ms slices in which some sample's command or
           symbol matches RE (or none does): the halves of an alternated
           row. Rows 6 and 7: ONLY_WITHOUT=pgbench is the RPC, ONLY_WITH=
           pgbench the floor; row 9: ONLY_WITH=treven_pii is DetectPii,
           ONLY_WITHOUT=treven_pii the bare health RPC.
  PER_S=N  the row's rate in that phase (calls a second, from the table):
           also print each process's CPU time per call (samples ÷ 999 Hz ÷
           calls, the calls being N × the seconds the phase was recorded).
  PROCESS  also list the top symbols of these processes ("services",
           "gateway", "agents", "postgres", "load generator", ...).

Processes are named by what runs in them (treven_gateway symbols: the
gateway; treven_reports or treven_tenants: the services process), since
every Treven process is the same `treven` binary. Kinds are matched on
symbol names, first match wins; the kernel's and libc's leftovers are
their own kinds. Standard library only.
"""
import collections
import os
import re
import subprocess
import sys

KINDS = [
    ("kernel: scheduling, wake-ups", r"finish_task_switch|schedule|futex|try_to_wake|ttwu|select_task|enqueue|dequeue|pick_next|update_curr|__switch_to|epoll|do_syscall|entry_SYSCALL|syscall_exit|x64_sys_call|irqentry|_raw_spin"),
    ("kernel: network", r"tcp_|ip_|skb|sock|net_|loopback|__dev_queue|inet|copy_|_copy|__sys_|recv|send|__check_object"),
    ("allocation, copies", r"malloc|_int_free|^free$|cfree|realloc|memmove|memcpy|memset|memcmp|unlink_chunk|malloc_consolidate|alloc::|RawVec|finish_grow"),
    ("tracing", r"tracing|opentelemetry|sharded_slab|Span"),
    ("JSON", r"serde_json|serde::|serde_core"),
    ("protobuf", r"prost"),
    ("HTTP/2, HTTP, gRPC", r"\bh2::|hyper|http::|httparse|axum|tower|tonic"),
    ("TLS, crypto", r"rustls|aws_lc|aesni|ghash|sha2|ed25519|curve25519|ring::"),
    ("sqlx", r"sqlx"),
    ("tokio", r"tokio|mio::|parking_lot"),
    ("hash maps", r"hashbrown|sip::|HashMap|BTreeMap|btree"),
]
HZ = 999  # the sampling rate `cargo xtask bench --perf` records at, per CPU
LINE = re.compile(r"\s*(\S+)\s+(\d+)\s+([0-9.]+):\s+[0-9a-f]+\s+(.*?)\s*\((.*)\)\s*$")


def samples_of(data):
    out = subprocess.run(
        ["perf", "script", "-i", data, "-F", "comm,pid,time,ip,sym,dso"],
        capture_output=True, text=True, check=True,
    ).stdout
    samples = []
    for line in out.splitlines():
        m = LINE.match(line)
        if m:
            comm, pid, time, sym, dso = m.groups()
            samples.append((int(pid), comm, dso, sym, float(time)))
    # Keep the 100 ms slices with (or without) a sample whose command or
    # symbol matches: how the alternated halves of a row are told apart.
    for variable, want in (("ONLY_WITH", True), ("ONLY_WITHOUT", False)):
        pattern = os.environ.get(variable)
        if pattern:
            mark = re.compile(pattern)
            marked = {int(s[4] * 10) for s in samples if mark.search(s[1]) or mark.search(s[3])}
            samples = [s for s in samples if (int(s[4] * 10) in marked) == want]
    return samples


def process_name(pid, rows):
    comms = " ".join(set(r[1] for r in rows))
    dsos = " ".join(set(r[2] for r in rows))
    syms = " ".join(r[3] for r in rows[:20000])
    if pid == 0:
        return "idle"
    for name, found in [
        ("load generator", "treven-load" in dsos),
        ("postgres", "postgres" in comms),
        ("redis", "redis" in comms),
        ("python (moto)", "python" in dsos or "python" in comms),
        ("pgbench", "pgbench" in comms),
        ("gateway", "treven_gateway" in syms),
        ("services", "treven_reports" in syms or "treven_tenants" in syms),
        ("agents", "treven_agents" in syms),
        ("treven (other)", "/treven" in dsos),
    ]:
        if found:
            return name
    return "other"


def kind_of(sym, dso):
    for name, pattern in KINDS:
        if re.search(pattern, sym):
            return name
    if "kernel" in dso:
        return "kernel: other"
    if "libc" in dso:
        return "libc: other"
    return "other"


def main():
    data, wanted = sys.argv[1], sys.argv[2:]
    samples = samples_of(data)
    if not samples:
        sys.exit(f"{data}: no samples")
    by_pid = collections.defaultdict(list)
    for s in samples:
        by_pid[s[0]].append(s)
    groups = collections.defaultdict(list)
    for pid, rows in by_pid.items():
        groups[process_name(pid, rows)].extend(rows)
    total = len(samples)
    seconds = len({int(s[4] * 10) for s in samples}) / 10
    per_s = float(os.environ.get("PER_S", "0"))
    calls = per_s * seconds
    print(f"{data}: {total} samples over {seconds:.1f} s"
          + (f", {calls:.0f} calls at {per_s:g}/s" if calls else ""))
    for name, rows in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        share = 100 * len(rows) / total
        if share < 0.5:
            continue
        cost = f"  {len(rows) / HZ / calls * 1e6:6.0f} µs/call" if calls and name != "idle" else ""
        print(f"  {share:5.1f}%  {name}{cost}")
        if name != "idle":
            kinds = collections.Counter(kind_of(r[3], r[2]) for r in rows)
            print("          " + "; ".join(
                f"{k} {100 * v / len(rows):.0f}%" for k, v in kinds.most_common(8)))
    for name in wanted:
        rows = groups.get(name, [])
        print(f"\n{name}: top symbols (% of its samples)")
        for sym, n in collections.Counter(r[3][:110] for r in rows).most_common(30):
            print(f"  {100 * n / len(rows):5.1f}%  {sym}")


if __name__ == "__main__":
    main()
