"""`python -m labkit.dns serve | upstream | query | dig`.

- `serve [--kubeconfig P] [--zone cluster.local] [--ttl 30] [--listen 0.0.0.0:53] [--resolv-conf /etc/resolv.conf]
  [--pods insecure] [--pod-ip IP]`: the cluster DNS server. Watches services, endpointslices, namespaces and pods
  (in-cluster service account unless --kubeconfig) and forwards other names to the resolv.conf nameservers.
- `upstream --config F --listen 203.0.113.53:53`: the "outside world" DNS (labkit.dns.upstream).
- `query --server S [--port P] [--tcp] HEX`: one wire exchange from this namespace, reply printed as hex.
- `dig NAME [TYPE] ...`: labkit.dns.dig.dig_main.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import gc
import ipaddress
import logging
import os
import signal
import socket
import struct
import sys
from typing import Any

from labkit import aio
from labkit.dns.dig import dig_main, parse_resolv_conf, query_main
from labkit.dns.handler import Handler
from labkit.dns.index import ClusterIndex
from labkit.dns.records import Lookup
from labkit.dns.server import DNSServer
from labkit.dns.upstream import UpstreamHandler, load_config

log = logging.getLogger("labkit.dns")
RESOURCES = ("namespaces", "services", "endpointslices", "pods")
STARTUP_TIMEOUT = 5.0  # CoreDNS kubernetes plugin startup_timeout
SIOCGIFADDR = 0x8915


def split_listen(text: str, default_port: int = 53) -> tuple[str, int]:
    """'0.0.0.0:53' → ('0.0.0.0', 53); '[::]:53' → ('::', 53); '127.0.0.1' → ('127.0.0.1', default)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest.lstrip(":") or default_port)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host or "0.0.0.0", int(port)
    return text, default_port


def local_ips(listen_host: str) -> list[str]:
    """The addresses CoreDNS would call its own (local.go boundIPs): the listen address, or every non-loopback one."""
    if listen_host not in ("0.0.0.0", "::", ""):
        return [listen_host]
    if os.environ.get("POD_IP"):
        return [os.environ["POD_IP"]]
    # ioctl and /proc rather than pyroute2: importing pyroute2 would cost the server ~20 MB of memory.
    addrs: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _index, name in socket.if_nameindex():
            if name == "lo":
                continue
            try:
                res = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue  # no IPv4 address on this interface
            addrs.append(socket.inet_ntoa(res[20:24]))
    with contextlib.suppress(OSError), open("/proc/net/if_inet6") as f:
        for line in f:
            hexaddr, _idx, _plen, scope, _flags, name = line.split()
            if name != "lo" and scope == "00":  # global scope only (no link-local)
                addrs.append(str(ipaddress.IPv6Address(bytes.fromhex(hexaddr))))
    return [a for a in addrs if not a.startswith("127.")]


def upstreams_from(path: str | None, own: set[str]) -> list[tuple[str, int]]:
    if not path:
        return []
    try:
        with open(path) as f:
            rc = parse_resolv_conf(f.read())
    except OSError:
        return []
    # Never forward to ourselves (the `loop` plugin would stop CoreDNS; we just skip that server).
    return [(ns, 53) for ns in rc.nameservers if ns not in own]


async def run_informers(index: ClusterIndex, kubeconfig: str | None) -> None:
    """List+watch the four resources into the index; mark it synced once all have listed (or after 5 s, unsynced)."""
    from labkit.client import Client, Informer

    client = Client.from_kubeconfig(kubeconfig) if kubeconfig else Client.in_cluster()
    informers: list[Any] = []
    tasks = []
    for res in RESOURCES:
        inf = Informer(client, res)
        inf.add_handler(index.handler_for(res))
        informers.append(inf)
        tasks.append(asyncio.create_task(inf.run()))
    try:
        await asyncio.wait_for(asyncio.gather(*(i.wait_synced() for i in informers)), STARTUP_TIMEOUT)
    except TimeoutError:
        log.warning("informers not synced after %.0f s; serving SERVFAIL for name errors meanwhile", STARTUP_TIMEOUT)
        await asyncio.gather(*(i.wait_synced() for i in informers))
    index.set_synced()
    log.info("synced: %d services, %d namespaces", len(index.services), len(index.namespaces))
    # Everything alive now (modules, the synced index) is long-lived: keep it out of the cyclic GC's full
    # collections, whose pauses of several ms would otherwise show in the latency tail.
    gc.collect()
    gc.freeze()
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await client.close()


async def _serve_forever(server: DNSServer, background: list[Any]) -> None:
    await server.start()
    log.info("listening on %s:%d (udp, tcp); ports %s", server.host, server.port, server.bound)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.ensure_future(b) for b in background]
    waiter = asyncio.ensure_future(stop.wait())
    await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for t in tasks:
        if t.done() and t.exception():
            log.error("background task failed: %r", t.exception())
        t.cancel()
    await server.stop()


def serve_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m labkit.dns serve")
    ap.add_argument("--kubeconfig", help="default: in-cluster service account")
    ap.add_argument("--zone", default="cluster.local")
    ap.add_argument("--ttl", type=int, default=30)
    ap.add_argument("--listen", default="0.0.0.0:53")
    ap.add_argument("--resolv-conf", default="/etc/resolv.conf")
    ap.add_argument("--pods", default="insecure", choices=["disabled", "insecure", "verified"])
    ap.add_argument("--pod-ip", action="append", help="this server's own IP(s) for the NS records")
    ap.add_argument("--http-host", default=None, help="address for :8181/ready :8080/health :9153/metrics")
    # CoreDNS's own flag, as the coredns Deployment passes it: kind's Corefile is what this server implements
    # built in, so the file is not read.
    ap.add_argument("-conf", dest="corefile", help="CoreDNS Corefile path (accepted and ignored)")
    args = ap.parse_args(argv)
    if not 0 <= args.ttl <= 3600:
        ap.error("--ttl must be within 0..3600")
    host, port = split_listen(args.listen)
    own = args.pod_ip or local_ips(host)
    index = ClusterIndex()
    handler = Handler(Lookup(index, args.zone, args.ttl, args.pods, own), upstreams_from(args.resolv_conf, set(own)))
    server = DNSServer(handler, host, port, http_host=args.http_host)
    aio.run(_serve_forever(server, [run_informers(index, args.kubeconfig)]))
    return 0


def upstream_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m labkit.dns upstream")
    ap.add_argument("--config", help="YAML zone data (default: the built-in example.net data)")
    ap.add_argument("--listen", default="203.0.113.53:53")
    args = ap.parse_args(argv)
    host, port = split_listen(args.listen)
    server = DNSServer(
        UpstreamHandler(load_config(args.config)), host, port, ready_port=None, health_port=None, metrics_port=None
    )
    aio.run(_serve_forever(server, []))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    commands = {"serve": serve_main, "upstream": upstream_main, "query": query_main, "dig": dig_main}
    if not argv or argv[0] not in commands:
        print("usage: python -m labkit.dns {serve|upstream|query|dig} ...", file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
