"""`labkit ipvs` (the live IPVS table, `ipvsadm -L -n` byte for byte) and `labkit curl` (who answers a Service).

`labkit ipvs [--stats] [--rate] [--exact] [--nosort] [--json] [--proc FILE]` reads the agent's control socket
`<home>/run/ipvs.sock`; with `--proc` it renders a /proc/net/ip_vs text instead (what the kind backend reads from
the node), so both backends print the same.

`labkit curl URL [--from POD] [-n NS] [--count N] [--json]` makes N fresh HTTP connections from inside the
cluster — from the pod's network namespace, else from the node's, never from the host's — and reports which pod
answered each. A pod is recognised by its answer when the body is a pod's name (agnhost `/hostname`,
serve-hostname); otherwise by where the agent sent the connection (its connection table, as `ipvsadm -L -n -c`
shows it, looked up while the connection is still open) or, for a direct connection, by the peer address; failing
both, the answer's first line stands for the responder.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from labkit.agent import control
from labkit.agent.ipvsadm import parse_proc, render_json, render_list
from labkit.agent.model import VirtualServer


def control_socket(home: Path) -> Path:
    return Path(home) / "run" / "ipvs.sock"


# ------------------------------------------------------------------------------------------------ labkit ipvs

def ipvs_main(argv: list[str], home: Path) -> int:
    """`labkit ipvs`: print the live table like `ipvsadm -L -n`; returns the exit status."""
    p = argparse.ArgumentParser(prog="labkit ipvs", description="the IPVS table, as `ipvsadm -L -n` prints it")
    p.add_argument("--stats", action="store_true", help="counters (Conns InPkts OutPkts InBytes OutBytes)")
    p.add_argument("--rate", action="store_true", help="rates (CPS InPPS OutPPS InBPS OutBPS)")
    p.add_argument("--exact", action="store_true", help="exact numbers (no K/M/G/T)")
    p.add_argument("--nosort", action="store_true", help="table order instead of sorted")
    p.add_argument("--json", action="store_true", help="the table as JSON (counters and rates included)")
    p.add_argument("--proc", metavar="FILE", help="render a /proc/net/ip_vs text (- = stdin) instead of the agent's")
    args = p.parse_args(argv)
    if args.stats and args.rate:
        p.error("--stats and --rate are exclusive (ipvsadm: multiple options)")
    if args.proc:
        text = sys.stdin.read() if args.proc == "-" else Path(args.proc).read_text()
        table: list[VirtualServer] = parse_proc(text)
    else:
        path = control_socket(home)
        try:
            table = control.read_table(str(path))
        except (OSError, ValueError, RuntimeError) as exc:
            print(f"labkit ipvs: the IPVS agent does not answer at {path} ({exc}); is the cluster up "
                  "(`labkit up`, `labkit status`)?", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(render_json(table), indent=2))
    else:
        sys.stdout.write(render_list(table, stats=args.stats, rate=args.rate, exact=args.exact, nosort=args.nosort))
    return 0


# ------------------------------------------------------------------------------------------------ labkit curl

@dataclass
class Reply:
    """One request's outcome."""

    index: int
    pod: str | None = None  # who answered (a pod name, or a stand-in when no pod could be named)
    status: int | None = None
    body: str = ""
    local: tuple[str, int] | None = None
    peer: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None  # where the agent sent it
    ms: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"i": self.index, "pod": self.pod, "status": self.status, "ms": round(self.ms, 2),
                "body": self.body[:200], "local": _hp(self.local), "peer": _hp(self.peer),
                "destination": _hp(self.destination), "error": self.error}


def _hp(addr: tuple[str, int] | None) -> str | None:
    return f"{addr[0]}:{addr[1]}" if addr else None


@dataclass
class PodIndex:
    """The cluster's pods by name and by IP (to name who answered)."""

    by_ip: dict[str, str] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)


class NetnsDialer:
    """Blocking sockets made inside a network namespace (one worker thread joined to it)."""

    def __init__(self, netns_path: str) -> None:
        from labkit.netns import NetnsSockets

        self._sockets = NetnsSockets(netns_path)

    def socket(self, type_: int = socket.SOCK_STREAM) -> socket.socket:
        return self._sockets.socket(socket.AF_INET, type_)

    def close(self) -> None:
        self._sockets.close()


class _DnsTransport:
    """labkit.dns.dig's transport interface over sockets made in the client's namespace."""

    def __init__(self, dialer: NetnsDialer, resolv_conf: str) -> None:
        self.dialer, self._resolv_conf = dialer, resolv_conf

    def resolv_conf(self) -> str:
        return self._resolv_conf

    def exchange(self, wire: bytes, server: str, port: int, tcp: bool, timeout: float) -> bytes:
        s = self.dialer.socket(socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
        with s:
            s.settimeout(timeout)
            s.connect((server, port))
            if tcp:
                s.sendall(len(wire).to_bytes(2, "big") + wire)
                n = int.from_bytes(_recv_exact(s, 2), "big")
                return _recv_exact(s, n)
            s.send(wire)
            return s.recv(65535)


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf


async def _cluster_info(home: Path, pod: str | None, namespace: str) -> tuple[dict[str, Any] | None, PodIndex]:
    from labkit.client import Client

    async with Client.from_kubeconfig(Path(home) / "kubeconfig", user_agent="labkit-curl") as client:
        obj = await client.get("pods", pod, namespace) if pod else None
        items, _ = await client.list("pods")
    index = PodIndex()
    for p in items:
        name = p["metadata"]["name"]
        index.names.add(name)
        for ip in [p.get("status", {}).get("podIP")] + [x.get("ip") for x in p.get("status", {}).get("podIPs", [])]:
            if ip and not p.get("spec", {}).get("hostNetwork"):
                index.by_ip[ip] = name
    return obj, index


def _resolv_conf_for(namespace: str) -> str:
    # A pod's resolv.conf (kubelet, dnsPolicy ClusterFirst); the node gets the same, so names work from it too.
    return (f"nameserver 10.96.0.10\nsearch {namespace}.svc.cluster.local svc.cluster.local cluster.local\n"
            "options ndots:5\n")


def _resolve(host: str, dialer: NetnsDialer, namespace: str) -> str:
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return host
    from labkit.dns.dig import resolve

    result = resolve(host, "A", transport=_DnsTransport(dialer, _resolv_conf_for(namespace)))  # type: ignore[arg-type]
    if not result.addresses:
        raise OSError(f"could not resolve host: {host}")
    return result.addresses[0]


def _http_get(dialer: NetnsDialer, ip: str, port: int, host_header: str, target: str, timeout: float,
              lookup: Any) -> Reply:
    reply = Reply(0)
    t0 = time.perf_counter()
    s = dialer.socket()
    try:
        s.settimeout(timeout)
        s.connect((ip, port))
        reply.local, reply.peer = s.getsockname()[:2], s.getpeername()[:2]
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: labkit-curl\r\nAccept: */*\r\n"
                  "Connection: close\r\n\r\n".encode())
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        # The connection is still open on our side: the agent still lists it, so ask where it went.
        reply.destination = lookup(reply.local)
    except OSError as exc:
        reply.error = str(exc) or type(exc).__name__
        return reply
    finally:
        s.close()
        reply.ms = (time.perf_counter() - t0) * 1e3
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    try:
        reply.status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        reply.error = "not an HTTP response"
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    reply.body = body.decode(errors="replace")
    return reply


def _dechunk(body: bytes) -> bytes:
    out, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2:]
    return out


def _who(reply: Reply, index: PodIndex, hostname_path: bool) -> str:
    body = reply.body.strip()
    if body in index.names or (hostname_path and body and not any(c.isspace() for c in body)):
        return body  # agnhost /hostname, serve-hostname: the pod's hostname, which is its name
    for addr in (reply.destination, reply.peer):
        if addr and addr[0] in index.by_ip:
            return index.by_ip[addr[0]]
    if reply.destination:
        return _hp(reply.destination) or "?"
    first = body.splitlines()[0] if body else ""
    return first or _hp(reply.peer) or "?"


def curl_main(argv: list[str], home: Path) -> int:
    """`labkit curl`: N fresh connections from inside the cluster; prints the count per answering pod."""
    p = argparse.ArgumentParser(prog="labkit curl", description="HTTP GET from inside the cluster; who answered?")
    p.add_argument("url")
    p.add_argument("--from", dest="pod", metavar="POD", help="the pod to send from (default: the node)")
    p.add_argument("-n", "--namespace", default="default", help="the pod's namespace (and DNS search domain)")
    p.add_argument("--count", "-c", type=int, default=1, help="number of fresh connections")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds per request")
    p.add_argument("--json", action="store_true", help="{counts: {pod: n}, requests: [...]} as JSON")
    args = p.parse_args(argv)
    from labkit.node.names import Names

    names = Names.for_home(home)
    url = urlsplit(args.url if "://" in args.url else "http://" + args.url)
    if url.scheme != "http":
        p.error("only http:// URLs")
    host = url.hostname or ""
    port = url.port or 80
    target = (url.path or "/") + (f"?{url.query}" if url.query else "")
    try:
        pod_obj, index = asyncio.run(_cluster_info(home, args.pod, args.namespace))
    except Exception as exc:
        print(f"labkit curl: cannot read pods from the cluster at {home}: {exc}", file=sys.stderr)
        return 1
    netns = names.pod_netns(pod_obj["metadata"]["uid"]) if pod_obj is not None else names.node_netns
    netns_path = Names.netns_path(netns)
    if not netns_path.exists():
        where = f"pod {args.namespace}/{args.pod}" if args.pod else "the node"
        print(f"labkit curl: {where} has no network namespace ({netns_path}); is it running?", file=sys.stderr)
        return 1
    dialer = NetnsDialer(str(netns_path))
    sock = control_socket(home)

    def lookup(local: tuple[str, int]) -> tuple[str, int] | None:
        if not sock.exists():
            return None
        try:
            conns = control.request(str(sock), "conns", timeout=2.0).get("conns", [])
        except (OSError, ValueError, RuntimeError):
            return None
        for c in conns:
            if tuple(c["client"]) == (local[0], local[1]):
                return (c["destination"][0], int(c["destination"][1]))
        return None

    replies: list[Reply] = []
    try:
        ip = _resolve(host, dialer, args.namespace)
        by_body = _body_names_pod(target)
        for i in range(args.count):
            r = _http_get(dialer, ip, port, url.netloc, target, args.timeout,
                          (lambda _local: None) if by_body else lookup)
            r.index = i
            if r.error is None:
                r.pod = _who(r, index, by_body)
            replies.append(r)
    except OSError as exc:
        print(f"labkit curl: {exc}", file=sys.stderr)
        return 1
    finally:
        dialer.close()
    counts = Counter(r.pod for r in replies if r.pod is not None)
    errors = [r for r in replies if r.error is not None]
    if args.json:
        print(json.dumps({"url": args.url, "from": args.pod or "node", "address": f"{ip}:{port}",
                          "counts": dict(sorted(counts.items())), "errors": len(errors),
                          "requests": [r.to_dict() for r in replies]}, indent=2))
    else:
        width = max([len(k) for k in counts] + [3])
        for pod, n in sorted(counts.items()):
            print(f"{pod:<{width}}  {n}")
        for r in errors[:5]:
            print(f"request {r.index}: {r.error}", file=sys.stderr)
        if errors:
            print(f"{len(errors)} of {len(replies)} requests failed", file=sys.stderr)
    return 0 if not errors else 1


def _body_names_pod(target: str) -> bool:
    """agnhost's /hostname answers with the pod's name: no need to ask the agent where a connection went."""
    return target.split("?")[0] in ("/hostname", "/hostName")
