"""Local benchmark of the cluster DNS server: UDP A queries on loopback, answers per second.

Runs labkit's coredns with kind's Corefile (`--log` adds the `log` plugin; the seed article's objects plus N
generated ClusterIP services, no API server) in a child process pinned
to one core when possible, and a windowed UDP client in this process. Loopback only (network safety): the
records contain cluster IPs as data, but no packet goes to a cluster address.

    .venv/bin/python bench/bench_dns_local.py [--seconds 5] [--services 1000] [--window 64]

Then how long `forward` takes to give up on an upstream that refuses every try (SERVFAIL once health checks mark
it down, well within forward's 5 s deadline).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import resource
import socket
import struct
import time


def _serve(port_q: mp.Queue, n_services: int, stop: mp.Event, log: bool) -> None:  # type: ignore[type-arg]
    with __import__("contextlib").suppress(Exception):
        os.sched_setaffinity(0, {0})
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    from labkit.dns import fixtures as f
    from labkit.dns.index import ClusterIndex
    from labkit.dns.testing import LocalCoreDNS, kind_corefile

    index = ClusterIndex()
    index.load(f.article_objects())
    for i in range(n_services):
        ip = f"10.96.{i // 250}.{i % 250 + 2}"
        index.load([f.service(f"svc{i}", "default", cluster_ips=[ip], ports=[{"port": 80}])])
    index.set_synced()

    async def main() -> None:
        corefile = kind_corefile(upstream=None)
        if log:
            corefile = corefile.replace("    errors\n", "    errors\n    log\n")
        server = LocalCoreDNS(corefile, index)
        await server.start()
        server.out.write = lambda text: len(text)  # type: ignore[method-assign]  # the log lines: not kept
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        port_q.put((server.port, rss))
        while not stop.is_set():
            await asyncio.sleep(0.1)
        await server.stop()

    asyncio.run(main())


def _query(name: str, qid: int) -> bytes:
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack("!HH", 1, 1)


async def _refused_upstream_seconds() -> float:
    """Seconds from a query to its SERVFAIL when the only upstream refuses every try."""
    from labkit.dns.testing import LocalCoreDNS, refusing_port

    corefile = f".:53 {{\n    errors\n    forward . 127.0.0.1:{refusing_port()}\n}}\n"
    async with LocalCoreDNS(corefile) as server:
        server.out.write = lambda text: len(text)  # type: ignore[method-assign]  # the errors line: not kept
        t0 = time.perf_counter()
        reply = await server.query("www.example.net.")
        elapsed = time.perf_counter() - t0
    assert reply.rcode() == 2, reply  # SERVFAIL
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--log", action="store_true", help="add the log plugin to the Corefile")
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    port_q: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    stop = ctx.Event()
    proc = ctx.Process(target=_serve, args=(port_q, args.services, stop, args.log), daemon=True)
    proc.start()
    try:
        port, rss = port_q.get(timeout=60)
        names = [f"svc{i}.default.svc.cluster.local." for i in range(min(args.services, 200))]
        names.append("nginx.default.svc.cluster.local.")
        queries = [_query(random.choice(names), i) for i in range(4096)]
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("127.0.0.1", port))
        s.settimeout(0.5)
        sent = received = lost = 0
        inflight = 0
        deadline = time.perf_counter() + args.seconds
        t0 = time.perf_counter()
        while time.perf_counter() < deadline:
            while inflight < args.window:
                s.send(queries[sent & 4095])
                sent += 1
                inflight += 1
            try:
                s.recv(4096)
                received += 1
                inflight -= 1
            except TimeoutError:
                lost += inflight
                inflight = 0
        elapsed = time.perf_counter() - t0
        print(f"server RSS at start: {rss:.1f} MB with {args.services} services")
        print(f"answers/s: {received / elapsed:,.0f} (sent {sent}, received {received}, lost {lost}, {elapsed:.1f} s)")
        print(f"a refused upstream: SERVFAIL after {asyncio.run(_refused_upstream_seconds()):.2f} s (forward's "
              f"deadline: 5 s)")
    finally:
        stop.set()
        proc.join(5)
        if proc.is_alive():
            proc.kill()


if __name__ == "__main__":
    main()
