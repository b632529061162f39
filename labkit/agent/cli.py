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
import http.client
import ipaddress
import json
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from labkit import errors
from labkit.agent import control
from labkit.agent.ipvsadm import (
    kernel_hz,
    lists_persistent,
    parse_proc,
    parse_proc_connections,
    render_connections,
    render_json,
    render_list,
)
from labkit.agent.model import Connection, VirtualServer


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
    p.add_argument("-c", "--connections", action="store_true",
                   help="the connection table, as `ipvsadm -L -n -c` prints it (with --proc: /proc/net/ip_vs_conn)")
    p.add_argument("--proc", metavar="FILE", help="render a /proc/net/ip_vs text (- = stdin) instead of the agent's")
    p.add_argument("--hz", type=int, metavar="HZ",
                   help="with --proc: the HZ of the kernel that wrote it (its persistence timeouts are in jiffies; "
                        "default: this kernel's, from /proc/timer_list)")
    args = p.parse_args(argv)
    if args.stats and args.rate:
        p.error("--stats and --rate are exclusive (ipvsadm: multiple options)")
    if args.connections:
        return _connections_main(args, home)
    other = _other_backend(home)
    if args.proc:
        text = sys.stdin.read() if args.proc == "-" else Path(args.proc).read_text()
        hz = args.hz
        if hz is None and lists_persistent(text):
            try:
                hz = kernel_hz(Path("/proc/timer_list").read_text())
            except (OSError, ValueError) as exc:
                p.error(f"the persistence timeouts are in jiffies and this kernel's HZ is unknown ({exc}): pass --hz")
        table: list[VirtualServer] = parse_proc(text, hz=hz)
    elif other is not None:
        table = other.ipvs_table()  # a kind or existing cluster: its first node's /proc/net/ip_vs
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


def _other_backend(home: Path) -> Any:
    """The kind or kubeconfig backend `home` holds, or None for the embedded cluster."""
    from labkit.backends import homes

    return homes.backend_for(home) if homes.backend_at(home) != "embedded" else None


def read_connections(home: Path) -> list[Connection]:
    """The agent's connection table (control socket `conns`)."""
    return [Connection.from_dict(c) for c in control.request(str(control_socket(home)), "conns")["conns"]]


def _connections_main(args: argparse.Namespace, home: Path) -> int:
    if args.proc:
        text = sys.stdin.read() if args.proc == "-" else Path(args.proc).read_text()
        conns = parse_proc_connections(text)
    elif (other := _other_backend(home)) is not None:
        conns = other.ipvs_connections()
    else:
        try:
            conns = read_connections(home)
        except (OSError, ValueError, RuntimeError) as exc:
            print(f"labkit ipvs: the IPVS agent does not answer at {control_socket(home)} ({exc}); is the cluster "
                  "up (`labkit up`, `labkit status`)?", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps([c.to_dict() for c in conns], indent=2))
    else:
        sys.stdout.write(render_connections(conns))
    return 0


# ------------------------------------------------------------------------------------------------ labkit nft

DEFAULT_NFT = ["list", "table", "ip", "kube-proxy"]  # what `labkit nft` lists when given nothing


def nft_output(home: Path, args: list[str] | None = None) -> str:
    """What `nft ARGS` (default: `list table ip kube-proxy`) prints in the node's network namespace, as on a kind
    node (`docker exec kind-control-plane nft list table ip kube-proxy`). Only listings: nothing is changed."""
    import subprocess

    from labkit.backends.embedded import Paths
    from labkit.node.names import Names

    args = args or DEFAULT_NFT
    if args[0] != "list":
        raise errors.LabkitError(f"only listings (`nft list ...`), not `nft {' '.join(args)}`")
    netns = Names.netns_path(Names.for_home(home).node_netns)
    if not netns.exists():
        raise errors.ClusterNotRunning(f"no node network namespace ({netns}); is the cluster up (`labkit up`)?")
    proc = subprocess.run(["nsenter", f"--net={netns}", "--", "nft", *args], capture_output=True, text=True,
                          timeout=30)
    if proc.returncode != 0:
        reason = proc.stderr.strip().splitlines()[0] if proc.stderr.strip() else f"exit {proc.returncode}"
        if "kube-proxy" in args and "No such file or directory" in proc.stderr:
            reason = (f"no table ip kube-proxy in the node's namespace: kube-proxy runs in "
                      f"{Paths(home).proxy_mode()} mode (`labkit up --proxy-mode nftables` for nftables mode)")
        raise errors.LabkitError(reason)
    return proc.stdout


def nft_main(argv: list[str], home: Path) -> int:
    """`labkit nft [list ...]`: nftables mode's rules from the node, as `nft list table ip kube-proxy` prints."""
    if argv[:1] in (["-h"], ["--help"]):
        print("usage: labkit nft [list table ip kube-proxy | list chain ip kube-proxy CHAIN | list map ip kube-proxy "
              "MAP | ...]\n\nnft's listings in the node's network namespace (default: the kube-proxy table).")
        return 0
    other = _other_backend(home)  # kind: `nft` in the first node's container; a cluster that exists: refused
    sys.stdout.write(other.nft(argv or DEFAULT_NFT) if other is not None else nft_output(home, argv))
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
    """Blocking sockets made inside a network namespace (by a worker thread joined to it, kept per namespace)."""

    def __init__(self, netns_path: str) -> None:
        self.netns_path = netns_path

    def socket(self, type_: int = socket.SOCK_STREAM) -> socket.socket:
        from labkit.dns.transports import socket_in_netns

        return socket_in_netns(self.netns_path, socket.AF_INET, type_)

    def close(self) -> None:
        pass  # the worker thread is shared (labkit.dns.transports) and lives as long as the process


async def _cluster_info(home: Path, pod: str | None, namespace: str) -> tuple[dict[str, Any] | None, PodIndex]:
    from labkit.client import Client

    async with Client.from_kubeconfig(Path(home) / "kubeconfig", user_agent="labkit-curl") as client:
        obj = await client.get("pods", pod, namespace) if pod else None
        items, _ = await client.list("pods")
    return obj, pod_index(items)


def pod_index(pods: list[dict[str, Any]]) -> PodIndex:
    """Index pod objects by name and by IP (host-network pods share the node's address: left out)."""
    index = PodIndex()
    for p in pods:
        name = p["metadata"]["name"]
        index.names.add(name)
        status = p.get("status") or {}
        for ip in [status.get("podIP")] + [x.get("ip") for x in status.get("podIPs") or []]:
            if ip and not (p.get("spec") or {}).get("hostNetwork"):
                index.by_ip[ip] = name
    return index


def resolve_host(host: str, transport: Any) -> str:
    """`host` as an address: itself if it is one, else the first address a glibc stub using `transport`'s
    resolv.conf finds (search list included), as curl in that pod would."""
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return host
    from labkit.dns.dig import resolve

    result = resolve(host, "A", transport=transport)
    if not result.addresses:
        raise OSError(f"could not resolve host: {host}")
    return result.addresses[0]


Lookup = Callable[[tuple[str, int]], "tuple[str, int] | None"]


class HttpConnection:
    """One HTTP/1.1 connection opened from inside the cluster, kept alive across `request()`s until `close()`.

    `lookup(local address)` says where the load balancer sent the connection (its connection table), asked
    while the connection is open; every reply carries it as `destination`.
    """

    def __init__(self, make_socket: Callable[[], socket.socket], address: str, port: int, host_header: str,
                 lookup: Lookup | None = None, timeout: float = 3.0) -> None:
        self.address, self.port, self.host_header = address, port, host_header
        self._lookup = lookup
        self.destination: tuple[str, int] | None = None
        self.target = "/"  # what request() asks for when given no target
        self.closed = False
        self._count = 0
        self.sock = make_socket()
        try:
            self.sock.settimeout(timeout)
            self.sock.connect((address, port))
        except BaseException:
            self.sock.close()
            raise
        self.local: tuple[str, int] = self.sock.getsockname()[:2]
        self.peer: tuple[str, int] = self.sock.getpeername()[:2]

    def request(self, target: str | None = None, *, close: bool = False) -> Reply:
        """GET `target` (default: `self.target`); `close` asks the server to close the connection after answering."""
        target = target or self.target
        reply = Reply(self._count, local=self.local, peer=self.peer)
        self._count += 1
        if self.closed:
            reply.error = "the connection is closed"
            return reply
        t0 = time.perf_counter()
        try:
            self.sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {self.host_header}\r\nUser-Agent: labkit-curl\r\n"
                              f"Accept: */*\r\nConnection: {'close' if close else 'keep-alive'}\r\n\r\n".encode())
            resp = http.client.HTTPResponse(self.sock, method="GET")
            resp.begin()
            body = resp.read()
            reply.status = resp.status
            reply.body = body.decode(errors="replace")
            if self.destination is None and self._lookup is not None:
                self.destination = self._lookup(self.local)  # still open on our side: the agent still lists it
            if resp.will_close:
                self.close()
        except (OSError, http.client.HTTPException) as exc:
            reply.error = str(exc) or type(exc).__name__
            self.close()
        reply.destination = self.destination
        reply.ms = (time.perf_counter() - t0) * 1e3
        return reply

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()

    def __enter__(self) -> HttpConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def conntrack_destinations(home: Path) -> dict[tuple[str, int], tuple[str, int]]:
    """nftables mode's connection table: the node's conntrack entries (`conntrack -L`, /proc/net/nf_conntrack read
    in the node's namespace), as {client address and port: where the DNAT sent it} for DNATed TCP connections."""
    from labkit.netns import run_in_netns
    from labkit.node.names import Names

    netns = Names.netns_path(Names.for_home(home).node_netns)
    return parse_conntrack(run_in_netns(netns, lambda: Path("/proc/thread-self/net/nf_conntrack").read_text()))


def parse_conntrack(text: str) -> dict[tuple[str, int], tuple[str, int]]:
    """/proc/net/nf_conntrack (or `conntrack -L`) as {client address and port: where the DNAT sent it}."""
    out: dict[tuple[str, int], tuple[str, int]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3 or fields[2] != "tcp":
            continue  # only TCP: a UDP flow (a DNS query) may use the same source port as a TCP connection
        words = [w.split("=", 1) for w in fields if "=" in w]
        src = [v for k, v in words if k == "src"]
        dst = [v for k, v in words if k == "dst"]
        sport = [v for k, v in words if k == "sport"]
        if len(src) < 2 or len(dst) < 2 or len(sport) < 2 or dst[0] == src[1]:
            continue  # not DNATed
        out[(src[0], int(sport[0]))] = (src[1], int(sport[1]))
    return out


def connection_lookup(home: Path) -> Lookup:
    """Where the load balancer sent the connection from `local` (the agent's connection table; in nftables mode
    the node's conntrack table), or None if it does not say."""
    sock = control_socket(home)
    from labkit.backends.embedded import Paths

    if Paths(home).proxy_mode() == "nftables":
        def from_conntrack(local: tuple[str, int]) -> tuple[str, int] | None:
            try:
                return conntrack_destinations(home).get((local[0], local[1]))
            except OSError:
                return None

        return from_conntrack

    def lookup(local: tuple[str, int]) -> tuple[str, int] | None:
        if not sock.exists():
            return None
        try:
            conns = read_connections(home)
        except (OSError, ValueError, RuntimeError):
            return None
        for c in conns:
            if c.protocol == "TCP" and c.source == (local[0], local[1]) and not c.template:
                return c.destination
        return None

    return lookup


def http_requests(open_connection: Callable[[], HttpConnection], target: str, count: int, *,
                  keepalive: bool = False) -> list[Reply]:
    """`count` GETs: each on a fresh connection (`Connection: close`), or all on one kept-alive connection
    (a new one only if the server closed it)."""
    replies: list[Reply] = []
    conn: HttpConnection | None = None
    try:
        for i in range(count):
            if conn is None or conn.closed:
                try:
                    conn = open_connection()
                except OSError as exc:
                    replies.append(Reply(i, error=str(exc) or type(exc).__name__))
                    conn = None
                    continue
            r = conn.request(target, close=not keepalive or i == count - 1)
            r.index = i
            replies.append(r)
            if not keepalive:
                conn.close()
    finally:
        if conn is not None:
            conn.close()
    return replies


def who_answered(reply: Reply, index: PodIndex, target: str) -> str:
    """The pod that answered: named by the body (agnhost /hostname), else by where the load balancer sent the
    connection, else by the peer address; failing all, the answer's first line stands for it."""
    hostname_path = _body_names_pod(target)
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
    p.add_argument("--count", "-c", type=int, default=1, help="number of requests (each on a fresh connection)")
    p.add_argument("--keepalive", action="store_true", help="send the requests on one kept-alive connection")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds per request")
    p.add_argument("--json", action="store_true", help="{counts: {pod: n}, requests: [...]} as JSON")
    args = p.parse_args(argv)
    url = urlsplit(args.url if "://" in args.url else "http://" + args.url)
    if url.scheme != "http":
        p.error("only http:// URLs")
    host = url.hostname or ""
    port = url.port or 80
    target = (url.path or "/") + (f"?{url.query}" if url.query else "")
    other = _other_backend(home)
    try:
        if other is not None:  # kind, or a cluster that exists: through its node helper pods
            index = pod_index(other.pods(args.namespace))
            ip = resolve_host(host, other.dns_transport(args.pod, args.namespace))

            def open_connection() -> HttpConnection:
                conn = other.http_connection(ip, port, from_pod=args.pod, namespace=args.namespace,
                                             timeout=args.timeout)
                conn.host_header = url.netloc  # resolved once, as above: the request still names the host asked
                return conn
        else:
            opened = _embedded_opener(home, args.pod, args.namespace, host, port, url.netloc, target, args.timeout)
            if opened is None:
                return 1
            index, ip, open_connection = opened
        replies: list[Reply] = []
        for r in http_requests(open_connection, target, args.count, keepalive=args.keepalive):
            if r.error is None:
                r.pod = who_answered(r, index, target)
            replies.append(r)
    except (OSError, LookupError, errors.LabkitError) as exc:
        print(f"labkit curl: {exc}", file=sys.stderr)
        return 1
    counts = Counter(r.pod for r in replies if r.pod is not None)
    failed = [r for r in replies if r.error is not None]
    if args.json:
        print(json.dumps({"url": args.url, "from": args.pod or "node", "address": f"{ip}:{port}",
                          "counts": dict(sorted(counts.items())), "errors": len(failed),
                          "requests": [r.to_dict() for r in replies]}, indent=2))
    else:
        width = max([len(k) for k in counts] + [3])
        for pod, n in sorted(counts.items()):
            print(f"{pod:<{width}}  {n}")
        for r in failed[:5]:
            print(f"request {r.index}: {r.error}", file=sys.stderr)
        if failed:
            print(f"{len(failed)} of {len(replies)} requests failed", file=sys.stderr)
    return 0 if not failed else 1


def _embedded_opener(home: Path, pod: str | None, namespace: str, host: str, port: int, host_header: str,
                     target: str, timeout: float) -> tuple[PodIndex, str, Callable[[], HttpConnection]] | None:
    """For the embedded cluster: the pods, the host's address, and connections made in the pod's (or the node's)
    network namespace; None (after saying why) when there is no such namespace."""
    from labkit.dns import transports
    from labkit.node.names import Names

    names = Names.for_home(home)
    try:
        pod_obj, index = asyncio.run(_cluster_info(home, pod, namespace))
    except Exception as exc:
        print(f"labkit curl: cannot read pods from the cluster at {home}: {exc}", file=sys.stderr)
        return None
    netns = names.pod_netns(pod_obj["metadata"]["uid"]) if pod_obj is not None else names.node_netns
    netns_path = Names.netns_path(netns)
    if not netns_path.exists():
        where = f"pod {namespace}/{pod}" if pod else "the node"
        print(f"labkit curl: {where} has no network namespace ({netns_path}); is it running?", file=sys.stderr)
        return None
    dialer = NetnsDialer(str(netns_path))
    lookup = None if _body_names_pod(target) else connection_lookup(home)
    transport = (transports.pod_transport(pod, namespace, home) if pod else transports.node_transport(home, namespace))
    ip = resolve_host(host, transport)

    def open_connection() -> HttpConnection:
        return HttpConnection(dialer.socket, ip, port, host_header, lookup, timeout)

    return index, ip, open_connection


def _body_names_pod(target: str) -> bool:
    """agnhost's /hostname answers with the pod's name: no need to ask the agent where a connection went."""
    return target.split("?")[0] in ("/hostname", "/hostName")
