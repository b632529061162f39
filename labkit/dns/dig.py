"""`dig` and a glibc-style `resolve` for notebooks, tests and the `labkit dig` command.

Queries must run inside the cluster network (a pod's network namespace, or the node's), never from the host
namespace (DESIGN.md, network safety). So formatting is kept apart from transport:

- `query_wire(wire, server, port, tcp, timeout) -> bytes` does one exchange from the *current* network namespace.
  `python -m labkit.dns query --server S [--port P] [--tcp] HEX` runs it and prints the reply as hex, so it can be
  executed inside a namespace (`kubectl exec`, `nsenter`, a child process that entered the netns).
- A `Transport` carries a query into the right namespace: `exchange(wire, server, port, tcp, timeout)` and
  `resolv_conf()`. `transport_for(from_pod, namespace)` picks one: the factory installed with
  `set_pod_transport_factory()` (the embedded backend installs its netns transport), else `KubectlExecTransport`;
  without a pod, the transport set with `set_node_transport()`, else `LocalTransport` (which refuses cluster
  addresses, since it would send from the host namespace).
- `dig()` returns a `DigResult`: `str()` reads like dig's output, `_repr_html_` renders tables, `to_dataframe()`,
  `to_json()`, `short()`.
"""

from __future__ import annotations

import argparse
import html
import ipaddress
import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

# Addresses that exist only inside labkit's namespaces (DESIGN.md): never sent to from the host namespace.
CLUSTER_NETWORKS = tuple(ipaddress.ip_network(n) for n in ("10.96.0.0/16", "10.244.0.0/16", "203.0.113.0/24"))
FLAG_ORDER = ("qr", "aa", "tc", "rd", "ra", "ad", "cd")
_FLAG_BITS = {
    "qr": dns.flags.QR, "aa": dns.flags.AA, "tc": dns.flags.TC, "rd": dns.flags.RD,
    "ra": dns.flags.RA, "ad": dns.flags.AD, "cd": dns.flags.CD,
}  # fmt: skip


# ------------------------------------------------------------------------------------------------- transport


def query_wire(wire: bytes, server: str, port: int = 53, tcp: bool = False, timeout: float = 2.0, *,
               make_socket: Callable[[int, int], socket.socket] | None = None) -> bytes:
    """Send one DNS message and return the reply bytes.

    The socket comes from `make_socket(family, type)` (e.g. one created inside a pod's network namespace),
    else from this process's own namespace. UDP waits for a datagram from the server carrying the query's ID
    (others are ignored); TCP uses the 2-byte length framing. Raises TimeoutError / OSError.
    """
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    deadline = time.monotonic() + timeout
    new = make_socket or socket.socket
    if tcp:
        with new(family, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect((server, port))
            s.sendall(struct.pack("!H", len(wire)) + wire)
            head = _recv_exact(s, 2, deadline)
            return _recv_exact(s, struct.unpack("!H", head)[0], deadline)
    with new(family, socket.SOCK_DGRAM) as s:
        s.connect((server, port))
        s.send(wire)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer from {server}#{port} within {timeout} s")
            s.settimeout(left)
            try:
                data = s.recv(65535)
            except TimeoutError:
                raise TimeoutError(f"no answer from {server}#{port} within {timeout} s") from None
            if data[:2] == wire[:2]:
                return data


def _recv_exact(s: socket.socket, n: int, deadline: float) -> bytes:
    buf = b""
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("TCP reply timed out")
        s.settimeout(left)
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed before the whole reply arrived")
        buf += chunk
    return buf


def is_cluster_address(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(ip in net for net in CLUSTER_NETWORKS)


class Transport(Protocol):
    """Carries a query into a network namespace."""

    def exchange(self, wire: bytes, server: str, port: int, tcp: bool, timeout: float) -> bytes: ...

    def resolv_conf(self) -> str: ...


class LocalTransport:
    """This process's own namespace. Refuses cluster addresses unless told it runs inside the cluster network."""

    def __init__(self, inside_cluster: bool = False, resolv_conf_path: str = "/etc/resolv.conf") -> None:
        self.inside_cluster = inside_cluster
        self.resolv_conf_path = resolv_conf_path

    def exchange(self, wire: bytes, server: str, port: int, tcp: bool, timeout: float) -> bytes:
        if not self.inside_cluster and is_cluster_address(server):
            raise PermissionError(
                f"{server} is a cluster address: query it from a pod (from_pod=...) or the node, not from the host "
                "(is the embedded cluster running? `labkit up`)"
            )
        return query_wire(wire, server, port, tcp, timeout)

    def resolv_conf(self) -> str:
        with open(self.resolv_conf_path) as f:
            return f.read()


# The exchange `KubectlExecTransport` runs inside a pod: standard library only, so any image with python3 will do
# (labkit need not be installed there). argv: server port tcp(0/1) timeout hex; prints the reply as hex.
EXEC_QUERY_SCRIPT = """
import socket, struct, sys, time
server, port, tcp, timeout, q = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", float(sys.argv[4]), \\
    bytes.fromhex(sys.argv[5])
fam = socket.AF_INET6 if ":" in server else socket.AF_INET
end = time.monotonic() + timeout
def left():
    t = end - time.monotonic()
    if t <= 0:
        sys.exit("timed out")
    return t
if tcp:
    s = socket.create_connection((server, port), timeout=timeout)
    s.sendall(struct.pack("!H", len(q)) + q)
    buf = b""
    while len(buf) < 2 or len(buf) < 2 + struct.unpack("!H", buf[:2])[0]:
        s.settimeout(left())
        chunk = s.recv(65537)
        if not chunk:
            sys.exit("connection closed")
        buf += chunk
    r = buf[2:2 + struct.unpack("!H", buf[:2])[0]]
else:
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.connect((server, port))
    s.send(q)
    while True:
        s.settimeout(left())
        r = s.recv(65535)
        if r[:2] == q[:2]:
            break
print(r.hex())
"""


class KubectlExecTransport:
    """Runs the exchange inside a pod with `kubectl exec … python3 -c EXEC_QUERY_SCRIPT` (the pod needs python3).

    This is how the helper reaches a kind cluster, whose namespaces this process cannot enter.
    `kubectl` is the command prefix (e.g. with `--kubeconfig`), `python` the interpreter inside the pod.
    """

    def __init__(self, pod: str, namespace: str = "default", kubectl: list[str] | None = None,
                 python: str = "python3") -> None:
        self.pod = pod
        self.namespace = namespace
        self.kubectl = kubectl or ["kubectl"]
        self.python = python

    def _run(self, *cmd: str, timeout: float) -> str:
        argv = [*self.kubectl, "exec", "-n", self.namespace, self.pod, "--", *cmd]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 10)
        if out.returncode != 0:
            raise OSError(f"kubectl exec failed: {out.stderr.strip()}")
        return out.stdout

    def exchange(self, wire: bytes, server: str, port: int, tcp: bool, timeout: float) -> bytes:
        cmd = [self.python, "-c", EXEC_QUERY_SCRIPT, server, str(port), "1" if tcp else "0", str(timeout), wire.hex()]
        return bytes.fromhex(self._run(*cmd, timeout=timeout).strip())

    def resolv_conf(self) -> str:
        return self._run("cat", "/etc/resolv.conf", timeout=5)


_pod_factory: Callable[[str, str], Transport] | None = None
_node_transport: Transport | None = None
_node_factory: Callable[[str], Transport] | None = None
_auto_tried = False


def set_pod_transport_factory(factory: Callable[[str, str], Transport] | None) -> None:
    """Install how to reach a pod's network namespace: factory(pod, namespace) -> Transport."""
    global _pod_factory
    _pod_factory = factory


def set_node_transport(transport: Transport | None) -> None:
    """Install the transport used when no pod is given (e.g. the node's namespace)."""
    global _node_transport
    _node_transport = transport


def set_node_transport_factory(factory: Callable[[str], Transport] | None) -> None:
    """Like set_node_transport, but made per query: factory(namespace) -> Transport (the namespace sets the
    search list `resolve()` uses). Takes precedence over set_node_transport."""
    global _node_factory
    _node_factory = factory


def _auto_install() -> None:
    """Once per process: with nothing installed, use the embedded cluster at $LABKIT_HOME if one runs."""
    global _auto_tried
    if _auto_tried or _pod_factory or _node_factory or _node_transport:
        return
    _auto_tried = True
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        # Running in a pod (kubelet sets this for every container): this namespace *is* the cluster network.
        set_node_transport(LocalTransport(inside_cluster=True))
        return
    try:
        from labkit.dns.transports import auto_install

        auto_install()
    except Exception:
        pass


def transport_for(from_pod: str | None, namespace: str = "default") -> Transport:
    """The transport for a query from `from_pod` (in `namespace`), or from the node when no pod is given."""
    _auto_install()
    if from_pod:
        return (_pod_factory or KubectlExecTransport)(from_pod, namespace)
    if _node_factory is not None:
        return _node_factory(namespace)
    return _node_transport or LocalTransport()


# ------------------------------------------------------------------------------------------------- results


def _rr_dicts(section: list[dns.rrset.RRset]) -> list[dict[str, Any]]:
    out = []
    for rrset in section:
        for rd in rrset:
            out.append(
                {
                    "name": rrset.name.to_text(),
                    "ttl": rrset.ttl,
                    "class": dns.rdataclass.to_text(rrset.rdclass),
                    "type": dns.rdatatype.to_text(rrset.rdtype),
                    "rdata": rd.to_text(),
                }
            )
    return out


@dataclass
class DigResult:
    """One query and its reply, shown the way dig shows it."""

    message: dns.message.Message
    server: str
    port: int = 53
    tcp: bool = False
    query_time_ms: int = 0
    size: int = 0
    when: datetime = field(default_factory=datetime.now)
    truncated_retry: bool = False  # the UDP answer was truncated and this one came over TCP

    @property
    def rcode(self) -> str:
        return dns.rcode.to_text(self.message.rcode())

    @property
    def flags(self) -> list[str]:
        return [f for f in FLAG_ORDER if self.message.flags & _FLAG_BITS[f]]

    @property
    def answer(self) -> list[dict[str, Any]]:
        return _rr_dicts(self.message.answer)

    @property
    def authority(self) -> list[dict[str, Any]]:
        return _rr_dicts(self.message.authority)

    @property
    def additional(self) -> list[dict[str, Any]]:
        return _rr_dicts(self.message.additional)

    @property
    def addresses(self) -> list[str]:
        """A and AAAA rdata of the answer section, in order."""
        return [r["rdata"] for r in self.answer if r["type"] in ("A", "AAAA")]

    def short(self) -> str:
        """Like `dig +short`: the answer section's rdata, one per line."""
        return "\n".join(r["rdata"] for r in self.answer)

    def to_json(self) -> dict[str, Any]:
        q = self.message.question[0] if self.message.question else None
        return {
            "rcode": self.rcode,
            "flags": self.flags,
            "question": {"name": q.name.to_text(), "type": dns.rdatatype.to_text(q.rdtype)} if q is not None else None,
            "answer": self.answer,
            "authority": self.authority,
            "additional": self.additional,
        }

    def to_dataframe(self) -> Any:
        """One row per record, with a `section` column (pandas)."""
        import pandas as pd

        rows = [
            {"section": sec, **r}
            for sec, recs in (("answer", self.answer), ("authority", self.authority), ("additional", self.additional))
            for r in recs
        ]
        return pd.DataFrame(rows, columns=["section", "name", "ttl", "class", "type", "rdata"])

    def _header_lines(self) -> list[str]:
        m = self.message
        n_add = sum(len(r) for r in m.additional) + (1 if m.edns >= 0 else 0)
        return [
            f";; ->>HEADER<<- opcode: {dns.opcode.to_text(m.opcode())}, status: {self.rcode}, id: {m.id}",
            f";; flags: {' '.join(self.flags)}; QUERY: {len(m.question)}, ANSWER: {sum(len(r) for r in m.answer)}, "
            f"AUTHORITY: {sum(len(r) for r in m.authority)}, ADDITIONAL: {n_add}",
        ]

    def __str__(self) -> str:
        m = self.message
        q = m.question[0] if m.question else None
        qtext = f"{q.name} {dns.rdatatype.to_text(q.rdtype)}" if q is not None else ""
        lines = [f"; <<>> labkit dig <<>> @{self.server} {qtext}"]
        if self.truncated_retry:
            lines.append(";; Truncated, retrying in TCP mode.")
        lines += [";; Got answer:", *self._header_lines()]
        if m.edns >= 0:
            flags = " do" if m.ednsflags & dns.flags.DO else ""
            lines += ["", ";; OPT PSEUDOSECTION:", f"; EDNS: version: {m.edns}, flags:{flags}; udp: {m.payload}"]
            for opt in m.options:
                if opt.otype == dns.edns.OptionType.COOKIE:
                    lines.append(f"; COOKIE: {opt.to_wire().hex()}")
                else:
                    lines.append(f"; OPT={int(opt.otype)}: {opt.to_wire().hex()}")
        if q is not None:
            lines += ["", ";; QUESTION SECTION:", f";{q.name}\t\t{dns.rdataclass.to_text(q.rdclass)}\t"
                      f"{dns.rdatatype.to_text(q.rdtype)}"]  # fmt: skip
        for title, recs in (("ANSWER", self.answer), ("AUTHORITY", self.authority), ("ADDITIONAL", self.additional)):
            if recs:
                lines += ["", f";; {title} SECTION:"]
                lines += [f"{r['name']}\t{r['ttl']}\t{r['class']}\t{r['type']}\t{r['rdata']}" for r in recs]
        proto = "TCP" if self.tcp else "UDP"
        lines += [
            "",
            f";; Query time: {self.query_time_ms} msec",
            f";; SERVER: {self.server}#{self.port}({self.server}) ({proto})",
            f";; WHEN: {self.when.strftime('%a %b %d %H:%M:%S %Z %Y').replace('  ', ' ')}",
            f";; MSG SIZE  rcvd: {self.size}",
        ]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<DigResult {self.rcode} {self.flags} answer={[r['rdata'] for r in self.answer]}>"

    def _repr_html_(self) -> str:
        e = html.escape
        parts = [f"<div><pre>{e(chr(10).join(self._header_lines()))}</pre>"]
        for title, recs in (("ANSWER", self.answer), ("AUTHORITY", self.authority), ("ADDITIONAL", self.additional)):
            if not recs:
                continue
            cols = ("name", "ttl", "class", "type", "rdata")
            rows = "".join("<tr>" + "".join(f"<td>{e(str(r[k]))}</td>" for k in cols) + "</tr>" for r in recs)
            parts.append(
                f"<table><caption style='text-align:left'>{title} SECTION</caption>"
                "<tr><th>name</th><th>ttl</th><th>class</th><th>type</th><th>rdata</th></tr>"
                f"{rows}</table>"
            )
        proto = "TCP" if self.tcp else "UDP"
        parts.append(f"<pre>;; SERVER: {e(self.server)}#{self.port} ({proto}), {self.query_time_ms} msec</pre></div>")
        return "".join(parts)


def make_query(name: str, rdtype: str | int = "A", *, edns: bool = True, rd: bool = True) -> dns.message.Message:
    """The query dig would send (EDNS 1232, RD set, no cookie); `edns=False`: no OPT record at all (`+noedns`),
    so the server answers within 512 bytes. (dnspython turns EDNS on whenever a payload is given.)"""
    opts: dict[str, Any] = {"use_edns": 0, "payload": 1232} if edns else {"use_edns": False}
    q = dns.message.make_query(dns.name.from_text(name), rdtype, **opts)
    if not rd:
        q.flags &= ~dns.flags.RD
    return q


def dig(
    name: str,
    rdtype: str | int = "A",
    *,
    server: str | None = None,
    port: int = 53,
    from_pod: str | None = None,
    namespace: str = "default",
    tcp: bool = False,
    timeout: float = 2.0,
    edns: bool = True,
    rd: bool = True,
    ignore: bool = False,
    transport: Transport | None = None,
) -> DigResult:
    """Query `name` like `dig @server name rdtype`, from inside `from_pod` (or the node).

    Without `server`, the first nameserver of the pod's /etc/resolv.conf is used (10.96.0.10 in a cluster).
    A truncated UDP answer (TC) is asked again over TCP, as dig does, unless `ignore` (`dig +ignore`) keeps it;
    `edns=False` sends no OPT record (`dig +noedns`), so answers are cut at 512 bytes.
    """
    t = transport or transport_for(from_pod, namespace)
    if server is None:
        servers = parse_resolv_conf(t.resolv_conf()).nameservers
        if not servers:
            raise ValueError("no nameserver in resolv.conf")
        server = servers[0]
    q = make_query(name, rdtype, edns=edns, rd=rd)
    wire = q.to_wire()
    t0 = time.perf_counter()
    reply = _exchange(t, wire, server, port, tcp, timeout)
    msg = dns.message.from_wire(reply, ignore_trailing=True)
    retried = False
    if not tcp and not ignore and msg.flags & dns.flags.TC:
        tcp = retried = True
        reply = _exchange(t, wire, server, port, True, timeout)
        msg = dns.message.from_wire(reply, ignore_trailing=True)
    elapsed = int((time.perf_counter() - t0) * 1000)
    return DigResult(msg, server, port, tcp, elapsed, len(reply), truncated_retry=retried)


def _exchange(t: Transport, wire: bytes, server: str, port: int, tcp: bool, timeout: float) -> bytes:
    try:
        return t.exchange(wire, server, port, tcp, timeout)
    except (TimeoutError, PermissionError):
        raise  # their messages already name the server
    except OSError as exc:  # e.g. "Connection refused": say from where
        raise type(exc)(f"no answer from {server}#{port} ({'TCP' if tcp else 'UDP'}): "
                        f"{exc.strerror or exc}") from exc


# ------------------------------------------------------------------------------------------------- resolve


@dataclass
class ResolvConf:
    nameservers: list[str] = field(default_factory=list)
    search: list[str] = field(default_factory=list)
    ndots: int = 1
    timeout: float = 5.0
    attempts: int = 2


def parse_resolv_conf(text: str) -> ResolvConf:
    """glibc's reading: up to 3 nameservers; the last search/domain line wins; options ndots/timeout/attempts."""
    rc = ResolvConf()
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0].startswith(("#", ";")):
            continue
        key, args = parts[0], parts[1:]
        if key == "nameserver" and args and len(rc.nameservers) < 3:
            rc.nameservers.append(args[0])
        elif key in ("search", "domain"):
            rc.search = [a.rstrip(".") for a in args] if key == "search" else args[:1]
        elif key == "options":
            for opt in args:
                k, _, v = opt.partition(":")
                if k == "ndots" and v.isdigit():
                    rc.ndots = min(int(v), 15)
                elif k == "timeout" and v.isdigit():
                    rc.timeout = float(min(int(v), 30))
                elif k == "attempts" and v.isdigit():
                    rc.attempts = min(int(v), 5)
    return rc


@dataclass
class ResolveTry:
    name: str
    rcode: str
    answers: int
    result: DigResult | None = None
    error: str | None = None

    @property
    def outcome(self) -> str:
        if self.error:
            return f"error: {self.error}"
        if self.rcode == "NOERROR" and self.answers == 0:
            return "NODATA"
        return self.rcode


@dataclass
class ResolveResult:
    """The names a glibc stub tried, in order, and the answer it settled on (None: not resolved)."""

    query: str
    rdtype: str
    tries: list[ResolveTry]
    answer: DigResult | None

    @property
    def addresses(self) -> list[str]:
        return self.answer.addresses if self.answer else []

    @property
    def name(self) -> str | None:
        """The name that resolved."""
        for t in self.tries:
            if t.result is self.answer and self.answer is not None:
                return t.name
        return None

    def __str__(self) -> str:
        lines = [f"resolve {self.query} {self.rdtype}:"]
        lines += [f"  {t.name:<50} {t.outcome}" for t in self.tries]
        lines.append(f"  → {', '.join(self.addresses) if self.addresses else 'not resolved'}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{html.escape(t.name)}</td><td>{html.escape(t.outcome)}</td></tr>" for t in self.tries)
        result = html.escape(", ".join(self.addresses) or "not resolved")
        return f"<table><tr><th>name tried</th><th>outcome</th></tr>{rows}</table><p>→ {result}</p>"


def search_candidates(name: str, rc: ResolvConf) -> list[str]:
    """The names glibc's res_search tries, in order (before stopping at the first answer)."""
    if name.endswith("."):
        return [name]
    dots = name.count(".")
    out: list[str] = []
    if dots >= rc.ndots:
        out.append(name + ".")
    out += [f"{name}.{d}." for d in rc.search if d]
    if dots < rc.ndots:
        out.append(name + ".")
    return out


def resolve(
    name: str,
    rdtype: str = "A",
    *,
    from_pod: str | None = None,
    namespace: str = "default",
    transport: Transport | None = None,
    resolv_conf: str | None = None,
) -> ResolveResult:
    """Resolve `name` the way a glibc program in `from_pod` would: search list and ndots from its resolv.conf.

    Each candidate is queried (UDP, RD, no EDNS, like glibc) until one has answers. NXDOMAIN and NODATA move on
    to the next candidate, and so does SERVFAIL; any other failure stops the search (glibc res_search).
    """
    t = transport or transport_for(from_pod, namespace)
    rc = parse_resolv_conf(resolv_conf if resolv_conf is not None else t.resolv_conf())
    tries: list[ResolveTry] = []
    answer: DigResult | None = None
    for cand in search_candidates(name, rc):
        result: DigResult | None = None
        error = None
        for server in rc.nameservers or ["127.0.0.1"]:
            try:
                result = dig(cand, rdtype, server=server, edns=False, transport=t, timeout=rc.timeout)
                break
            except (OSError, EOFError) as exc:
                error = str(exc) or type(exc).__name__
        if result is None:
            tries.append(ResolveTry(cand, "", 0, None, error))
            break
        n = len(result.answer)
        tries.append(ResolveTry(cand, result.rcode, n, result))
        if result.rcode == "NOERROR" and n > 0:
            answer = result
            break
        if result.rcode not in ("NOERROR", "NXDOMAIN", "SERVFAIL"):
            break
    return ResolveResult(name, rdtype, tries, answer)


# ------------------------------------------------------------------------------------------------- CLI


def dig_main(argv: list[str] | None = None, home: str | Path | None = None) -> int:
    """`labkit dig NAME [TYPE] [--from POD] [-n NS] [--server S] [--tcp] [--noedns] [--ignore] [--short] [--json]`.

    `home` is the embedded cluster's state directory (`labkit --home`); when a cluster runs there, queries go
    out from its node's or pod's network namespace. Without one running, the installed transports (or kubectl
    exec for --from) are used. Exit status like dig's: 0 answered (whatever the rcode), 9 no reply, 1 other errors.
    """
    ap = argparse.ArgumentParser(prog="labkit dig", description="Query the cluster DNS from inside a pod.")
    ap.add_argument("name")
    ap.add_argument("type", nargs="?", default="A")
    ap.add_argument("--from", dest="from_pod", help="pod whose network namespace sends the query")
    ap.add_argument("-n", "--namespace", default="default")
    ap.add_argument("--server", help="nameserver (default: the first one in the pod's /etc/resolv.conf)")
    ap.add_argument("--port", type=int, default=53)
    ap.add_argument("--tcp", action="store_true")
    ap.add_argument("--noedns", action="store_true", help="send no EDNS OPT record (answers cut at 512 bytes)")
    ap.add_argument("--ignore", action="store_true", help="keep a truncated UDP answer instead of retrying over TCP")
    ap.add_argument("--timeout", type=float, default=2.0)
    out = ap.add_mutually_exclusive_group()
    out.add_argument("--short", action="store_true")
    out.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        transport: Transport | None = None
        if home is not None:
            from labkit.backends import homes
            from labkit.dns import transports as tr

            if homes.backend_at(Path(home)) != "embedded":  # kind, or a cluster that exists: through its helpers
                transport = homes.backend_for(Path(home)).dns_transport(args.from_pod, args.namespace)
            elif tr.embedded_running(home):
                transport = (tr.pod_transport(args.from_pod, args.namespace, home) if args.from_pod
                             else tr.node_transport(home, args.namespace))
        r = dig(
            args.name, args.type.upper(), server=args.server, port=args.port, from_pod=args.from_pod,
            namespace=args.namespace, tcp=args.tcp, timeout=args.timeout, edns=not args.noedns, ignore=args.ignore,
            transport=transport,
        )  # fmt: skip
    except (OSError, EOFError) as exc:
        print(f";; {exc or type(exc).__name__}", file=sys.stderr)
        return 9
    except (LookupError, ValueError, dns.exception.DNSException) as exc:
        print(f";; {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(r.to_json(), indent=2))
    elif args.short:
        if r.short():
            print(r.short())
    else:
        print(r)
    return 0


def query_main(argv: list[str] | None = None) -> int:
    """`python -m labkit.dns query --server S [--port P] [--tcp] [--timeout T] [HEX]`: wire in, wire out (hex)."""
    ap = argparse.ArgumentParser(prog="python -m labkit.dns query")
    ap.add_argument("--server", required=True)
    ap.add_argument("--port", type=int, default=53)
    ap.add_argument("--tcp", action="store_true")
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("hex", nargs="?", help="the query as hex (default: read from stdin)")
    args = ap.parse_args(argv)
    data = bytes.fromhex((args.hex or sys.stdin.read()).strip())
    try:
        reply = query_wire(data, args.server, args.port, args.tcp, args.timeout)
    except (OSError, EOFError) as exc:
        print(f"query failed: {exc}", file=sys.stderr)
        return 9
    print(reply.hex())
    return 0

