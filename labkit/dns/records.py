"""The record rules of the cluster zone (dns-rules.md §4–§5), following CoreDNS's plugin/kubernetes and
plugin/backend_lookup.go: parse → find (items, or a name error) → per-type records.

`find` produces *items* (CoreDNS's msg.Service): an address or a CNAME target, with a port and the domain it
names. The per-type functions turn items into records. Name errors are raised as NameErrorResult and decided
only at the find stage; "no records of that type" is NODATA. `Lookup.answer()` is the kubernetes plugin's
ServeDNS switch and returns an `Answer`.

Out-of-zone ExternalName targets need an upstream lookup; the rules are synchronous, so when one is needed and
not yet in `upstream`, NeedUpstream is raised. The caller performs the lookup, stores it and calls again.
"""

from __future__ import annotations

import functools
import ipaddress
import math
from dataclasses import dataclass, field

from labkit.dns import wire
from labkit.dns.index import ClusterIndex, Endpoint, Service
from labkit.dns.parse import POD, NameErrorResult, RecordRequest, parse_request
from labkit.dns.wire import RR, Name

DNS_SCHEMA_VERSION = "1.1.0"
TXT_TTL = 28800
MAX_CNAME_CHAIN = 10  # CoreDNS ≥ 1.12.1


class NeedUpstream(Exception):
    """An out-of-zone CNAME target must be resolved upstream before the answer can be built."""

    def __init__(self, target: Name, qtype: int) -> None:
        super().__init__(wire.name_to_text(target))
        self.target = target
        self.qtype = qtype


@dataclass(slots=True)
class UpstreamAnswer:
    """What an upstream lookup gave: the answer section and the TC bit."""

    answer: list[RR]
    truncated: bool = False


@dataclass(slots=True)
class Item:
    """One lookup result (CoreDNS msg.Service)."""

    host: str  # IP address, CNAME target, or "" for TXT
    port: int = 0
    key: Name = ()  # the domain this item names (SRV target, NS name)
    text: str = ""
    ttl: int = 30


@dataclass(slots=True)
class Answer:
    """The plugin's verdict for one question."""

    rcode: int  # NOERROR, NXDOMAIN, SERVFAIL, REFUSED
    answer: list[RR] = field(default_factory=list)
    extra: list[RR] = field(default_factory=list)
    authority: list[RR] = field(default_factory=list)
    truncated: bool = False
    authoritative: bool = True
    used_upstream: bool = False  # the answer holds upstream data (not cacheable)


@functools.lru_cache(maxsize=65536)
def host_type(host: str) -> tuple[int, bytes]:
    """(A|AAAA, packed) for an IP, (CNAME, b"") for anything else (CoreDNS msg.Service.HostType)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return wire.CNAME, b""
    return (wire.A if ip.version == 4 else wire.AAAA), ip.packed


def _labels(*parts: str) -> Name:
    out: list[bytes] = []
    for p in parts:
        if p:
            out.extend(x.encode("latin-1") for x in p.split("."))
    return tuple(out)


def _is_subdomain(parent: Name, child: Name) -> bool:
    """Case-insensitive: child at or under parent."""
    n = len(parent)
    return len(child) >= n and wire.lower(child[len(child) - n :]) == wire.lower(parent)


def _match_port_proto(a_port: str, b_port: str, a_proto: str, b_proto: str) -> bool:
    # The request side may be empty (wild): bare service names match every port.
    return (not a_port or a_port == b_port.lower()) and (not a_proto or a_proto == b_proto.lower())


class Question:
    """One question as the plugin sees it: qname as received, qtype, and the matched zone spelled as queried."""

    __slots__ = ("lname", "qname", "qtype", "zone")

    def __init__(self, qname: Name, qtype: int, zone: Name) -> None:
        self.qname = qname
        self.qtype = qtype
        self.zone = zone
        self.lname = wire.lower(qname)

    def base(self) -> list[str]:
        """Labels left of the zone, lower case."""
        return [x.decode("latin-1") for x in self.lname[: len(self.lname) - len(self.zone)]]

    def with_name(self, qname: Name, qtype: int | None = None) -> Question:
        return Question(qname, self.qtype if qtype is None else qtype, self.zone)


class Lookup:
    """CoreDNS's kubernetes plugin over a ClusterIndex (kind's Corefile defaults: pods insecure, ttl 30)."""

    def __init__(
        self,
        index: ClusterIndex,
        zone: str = "cluster.local",
        ttl: int = 30,
        pods: str = "insecure",
        ns_ips: list[str] | None = None,
        *,
        namespaces: set[str] | None = None,
        endpoint_pod_names: bool = False,
        ignore_empty_service: bool = False,
    ) -> None:
        if pods not in ("disabled", "insecure", "verified"):
            raise ValueError(f"pods mode {pods!r}")
        self.index = index
        self.zone = zone.strip(".").lower()  # the primary zone: PTR targets are named in it
        self.zone_name = wire.name_from_text(self.zone)
        self.ttl = ttl
        self.pods = pods
        self.ns_ips = list(ns_ips or [])
        self.namespaces = namespaces or set()  # `namespaces`: only these are exposed
        self.endpoint_pod_names = endpoint_pod_names
        self.ignore_empty_service = ignore_empty_service

    def namespace_exposed(self, namespace: str) -> bool:
        """namespace.go namespaceExposed: configured (if a list is set) and existing."""
        if self.namespaces and namespace not in self.namespaces:
            return False
        return self.index.namespace_exists(namespace)

    # ---------------------------------------------------------------------------------------- find stage

    def records(self, q: Question) -> list[Item]:
        """Kubernetes.Records: parse, then pods or services. Raises NameErrorResult."""
        r = parse_request(q.base())
        if not r.pod_or_svc:
            return []
        if is_reverse(q.lname):
            # Reverse names: only PTR decodes them (plugin.Reverse); everything else is a name error.
            raise NameErrorResult("forward name in a reverse zone")
        if not self.namespace_exposed(r.namespace):
            raise NameErrorResult("namespace not exposed")
        if r.pod_or_svc == POD:
            return self.find_pods(r, q)
        return self.find_services(r, q)

    def find_pods(self, r: RecordRequest, q: Question) -> list[Item]:
        if self.pods == "disabled":
            raise NameErrorResult("pods disabled")
        if not r.service:
            return []  # <ns>.pod.<zone>: NODATA
        podname = r.service
        if podname.count("-") == 3 and "--" not in podname:
            ip_text = podname.replace("-", ".")
        else:
            ip_text = podname.replace("-", ":")
        try:
            ip = ipaddress.ip_address(ip_text)
        except ValueError:
            raise NameErrorResult("pod name is not an IP") from None
        if self.pods == "verified" and not self.index.pod_ip_exists(r.namespace, ip.compressed):
            raise NameErrorResult("no such pod")
        return [Item(ip.compressed, key=_labels(podname, r.namespace, POD) + q.zone, ttl=self.ttl)]

    def find_services(self, r: RecordRequest, q: Question) -> list[Item]:
        if not r.service:
            return []  # <ns>.svc.<zone>: NODATA
        svc = self.index.service(r.namespace, r.service)
        if svc is None:
            raise NameErrorResult("no such service")
        items: list[Item] = []
        found = False
        base = _labels(svc.name, svc.namespace, "svc") + q.zone
        if svc.is_external:
            # No endpoints and no port/proto names under an ExternalName service; an IP-looking externalName is
            # skipped altogether (coredns/coredns#2324).
            if r.endpoint or r.port or r.protocol:
                raise NameErrorResult("no names under an ExternalName service")
            if svc.external_name and host_type(svc.external_name)[0] == wire.CNAME:
                return [Item(svc.external_name, key=base, ttl=self.ttl)]
            raise NameErrorResult("externalName is an IP")
        if self.ignore_empty_service and not svc.headless and not self.index.endpoints(svc.namespace, svc.name):
            raise NameErrorResult("empty service ignored")
        if svc.headless or r.endpoint:
            for ep in self.index.endpoints(svc.namespace, svc.name):
                label = ep.label(self.endpoint_pod_names)
                if r.endpoint and r.endpoint != label.lower():
                    continue
                for p in ep.ports:
                    if not _match_port_proto(r.port, p.name, r.protocol, p.protocol):
                        continue
                    found = True
                    items.append(Item(ep.ip, p.port, _labels(label) + base, ttl=self.ttl))
        else:
            for p in svc.ports:
                if not _match_port_proto(r.port, p.name, r.protocol, p.protocol):
                    continue
                found = True
                for ip in svc.cluster_ips:
                    items.append(Item(ip, p.port, base, ttl=self.ttl))
        if not found:
            raise NameErrorResult("no matching endpoint or port")
        return items

    def is_default_ns(self, q: Question) -> bool:
        # Compares the lower-cased qname with the zone as queried, like CoreDNS (a mixed-case zone never matches).
        return q.lname == (b"ns", b"dns", *q.zone)

    def ns_addresses(self, zone: Name) -> list[tuple[Name, str]]:
        """(name, ip) pairs for this server's NS records (CoreDNS nsAddrs): the services our own IPs serve."""
        out: list[tuple[Name, str]] = []
        for local in self.ns_ips:
            for ns, svc_name, _ep in self.index.endpoints_by_ip(local):
                svc = self.index.service(ns, svc_name)
                if svc is None:
                    continue
                base = _labels(svc.name, svc.namespace, "svc") + zone
                if svc.headless:
                    for e in self.index.endpoints(ns, svc_name):
                        out.append((_labels(e.label(self.endpoint_pod_names)) + base, e.ip))
                else:
                    out.extend((base, ip) for ip in svc.cluster_ips)
        if not out:
            out = [((b"ns", b"dns", *zone), ip) for ip in self.ns_ips]
        return out

    def services(self, q: Question) -> list[Item]:
        """Kubernetes.Services: the per-qtype front of Records (TXT, NS, ns.dns, SRV filtering)."""
        if q.qtype == wire.TXT:
            base = q.base()
            if len(base) == 1 and base[0] == "dns-version":
                return [Item("", text=DNS_SCHEMA_VERSION, ttl=TXT_TTL)]
            try:
                found = self.records(q)
            except NameErrorResult:
                found = []
            if found:
                return []
            raise NameErrorResult("no TXT here")
        if q.qtype == wire.NS:
            return self._ns_items(q.zone, q.qtype)
        if self.is_default_ns(q):
            return self._ns_items(q.zone, q.qtype)
        items = self.records(q)
        if q.qtype == wire.SRV:
            items = [i for i in items if host_type(i.host)[0] != wire.CNAME]
        return items

    def _ns_items(self, zone: Name, qtype: int) -> list[Item]:
        out = []
        for name, ip in self.ns_addresses(zone):
            t = host_type(ip)[0]
            if qtype == wire.NS or t == qtype:
                out.append(Item(ip, key=name, ttl=self.ttl))
        return out

    # ---------------------------------------------------------------------------------------- records stage

    def address(
        self, q: Question, upstream: dict[tuple[Name, int], UpstreamAnswer], previous: list[RR]
    ) -> tuple[list[RR], bool]:
        """plugin.A / plugin.AAAA (q.qtype selects the family): addresses, CNAMEs chased in-zone or upstream."""
        items = self.services(q)  # checkForApex reduces to this: the apex has no addresses
        records: list[RR] = []
        truncated = False
        seen: set[str] = set()
        for it in items:
            t, packed = host_type(it.host)
            if t == wire.CNAME:
                target = _labels(it.host.rstrip("."))
                if _is_subdomain(q.lname, target):
                    continue  # x CNAME x, or a target under the query name: a loop
                cname = RR(q.qname, wire.CNAME, it.ttl, target)
                if len(previous) >= MAX_CNAME_CHAIN:
                    continue
                if any(p.rtype == wire.CNAME and wire.lower(p.rdata) == wire.lower(target) for p in previous):  # type: ignore[arg-type]
                    continue
                if _is_subdomain(q.zone, target):
                    try:
                        nxt, tc = self.address(q.with_name(target), upstream, [*previous, cname])
                    except NameErrorResult:
                        nxt, tc = [], False  # in-zone target missing: the CNAME goes too (NODATA)
                    if nxt:
                        records.append(cname)
                        records.extend(nxt)
                    truncated = truncated or tc
                    continue
                up = upstream.get((wire.lower(target), q.qtype))
                if up is None:
                    raise NeedUpstream(target, q.qtype)
                truncated = truncated or up.truncated
                records.append(cname)
                records.extend(up.answer)
                continue
            if t == q.qtype and it.host not in seen:
                seen.add(it.host)
                records.append(RR(q.qname, t, it.ttl, packed))
        return records, truncated

    def txt(self, q: Question) -> list[RR]:
        return [RR(q.qname, wire.TXT, it.ttl, wire.txt_rdata(it.text)) for it in self.services(q) if it.text]

    def cname(self, q: Question) -> list[RR]:
        items = self.services(q)
        if items and host_type(items[0].host)[0] == wire.CNAME and items[0].host:
            return [RR(q.qname, wire.CNAME, items[0].ttl, _labels(items[0].host.rstrip(".")))]
        return []

    def srv(self, q: Question) -> tuple[list[RR], list[RR]]:
        """plugin.SRV: weight floor(100/N) with N counted before de-duplication; targets' addresses as extra."""
        items = self.services(q)
        n = len(items)
        records: list[RR] = []
        extra: list[RR] = []
        dup: set[tuple[Name, str, int]] = set()
        for it in items:
            if it.port == -1:
                continue
            weight = max(1, math.floor(100.0 / (100 * n) * 100))
            t, packed = host_type(it.host)
            target = it.key
            if (target, "", it.port) not in dup:
                dup.add((target, "", it.port))
                records.append(RR(q.qname, wire.SRV, it.ttl, (0, weight, it.port, target)))
            if (target, it.host, 0) not in dup:
                dup.add((target, it.host, 0))
                extra.append(RR(target, t, it.ttl, packed))
        return records, extra

    def ptr(self, q: Question) -> list[RR]:
        """plugin.PTR over Kubernetes.Reverse: ClusterIP first (one record), else every ready endpoint."""
        ip = address_from_reverse(q.lname)
        if ip is None:
            self.records(q)  # NODATA or a name error, as for any other type
            return []
        hosts: list[Name] = []
        svcs = self.index.services_by_cluster_ip(ip)
        if svcs:
            hosts.append(_labels(svcs[0].name, svcs[0].namespace, "svc") + self.zone_name)
        else:
            for ns, svc_name, ep in self.index.endpoints_by_ip(ip):
                hosts.append(_labels(ep.label(self.endpoint_pod_names), svc_name, ns, "svc") + self.zone_name)
        if not hosts:
            raise NameErrorResult("no PTR")
        seen: set[Name] = set()
        out = []
        for h in hosts:
            if h not in seen:
                seen.add(h)
                out.append(RR(q.qname, wire.PTR, self.ttl, h))
        return out

    def ns(self, q: Question) -> tuple[list[RR], list[RR]]:
        records: list[RR] = []
        extra: list[RR] = []
        seen: set[Name] = set()
        for it in self._ns_items(q.zone, wire.NS):
            t, packed = host_type(it.host)
            extra.append(RR(it.key, t, it.ttl, packed))
            if it.key not in seen:
                seen.add(it.key)
                records.append(RR(q.qname, wire.NS, it.ttl, it.key))
        return records, extra

    def soa(self, zone: Name) -> RR:
        ttl = min(self.ttl, 300)
        return RR(
            zone,
            wire.SOA,
            ttl,
            ((b"ns", b"dns", *zone), (b"hostmaster", *zone), self.index.serial, 7200, 1800, 86400, self.ttl),
        )

    # ---------------------------------------------------------------------------------------- the switch

    def answer(self, q: Question, upstream: dict[tuple[Name, int], UpstreamAnswer] | None = None) -> Answer:
        """Kubernetes.ServeDNS for a question in one of our zones (q.zone matched). Raises NeedUpstream.

        rcode NXDOMAIN here may still be turned into a fallthrough by the caller (reverse zones) or SERVFAIL
        (not synced); the SOA for the authority section is attached for NXDOMAIN and NODATA.
        """
        upstream = upstream or {}
        qt = q.qtype
        records: list[RR] = []
        extra: list[RR] = []
        truncated = False
        try:
            if qt in (wire.A, wire.AAAA):
                records, truncated = self.address(q, upstream, [])
            elif qt == wire.TXT:
                records = self.txt(q)
            elif qt == wire.CNAME:
                records = self.cname(q)
            elif qt == wire.PTR:
                records = self.ptr(q)
            elif qt == wire.MX:
                self.services(q)  # never any MX data: NODATA or NXDOMAIN
            elif qt == wire.SRV:
                records, extra = self.srv(q)
            elif qt == wire.SOA:
                if q.qname == q.zone:
                    records = [self.soa(q.zone)]
            elif qt in (wire.AXFR, wire.IXFR):
                return Answer(wire.REFUSED, authoritative=False)
            elif qt == wire.NS and q.lname == q.zone:
                records, extra = self.ns(q)
            else:
                # Any other type (and NS off the apex): a hidden A lookup tells NXDOMAIN from NODATA.
                self.address(q.with_name(q.qname, wire.A), upstream, [])
        except NameErrorResult:
            return Answer(wire.NXDOMAIN, authority=[self.soa(q.zone)])
        if not records:
            return Answer(wire.NOERROR, authority=[self.soa(q.zone)])
        return Answer(wire.NOERROR, answer=records, extra=extra, truncated=truncated, used_upstream=bool(upstream))


def is_reverse(lname: Name) -> bool:
    """dnsutil.IsReverse: a name under in-addr.arpa or ip6.arpa."""
    return lname[-2:] in ((b"in-addr", b"arpa"), (b"ip6", b"arpa"))


def address_from_reverse(lname: Name) -> str | None:
    """Canonical IP of a full reverse name (4 labels under in-addr.arpa, 32 nibbles under ip6.arpa), else None."""
    if lname[-2:] == (b"in-addr", b"arpa"):
        parts = lname[:-2]
        if len(parts) != 4:
            return None
        try:
            return ipaddress.IPv4Address(".".join(p.decode("latin-1") for p in reversed(parts))).compressed
        except ValueError:
            return None
    if lname[-2:] == (b"ip6", b"arpa"):
        parts = lname[:-2]
        if len(parts) != 32 or any(len(p) != 1 for p in parts):
            return None
        try:
            hexs = "".join(p.decode("latin-1") for p in reversed(parts))
            return ipaddress.IPv6Address(int(hexs, 16)).compressed
        except ValueError:
            return None
    return None


__all__ = [
    "Answer",
    "Endpoint",
    "Item",
    "Lookup",
    "NeedUpstream",
    "Question",
    "Service",
    "UpstreamAnswer",
    "address_from_reverse",
]
