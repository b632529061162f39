"""labkit's cluster DNS: a CoreDNS-`kubernetes`-plugin-compatible server for cluster.local, its "outside world"
upstream, and the `dig`/`resolve` helpers. See dns-rules.md for the rules implemented."""

# `dig` the function lives in labkit.dns.dig (not re-exported here: it would shadow the submodule).
from labkit.dns.dig import DigResult, ResolveResult, dig_main, query_wire, resolve
from labkit.dns.handler import Handler
from labkit.dns.index import ClusterIndex
from labkit.dns.records import Lookup
from labkit.dns.server import DNSServer

__all__ = [
    "ClusterIndex",
    "DNSServer",
    "DigResult",
    "Handler",
    "Lookup",
    "ResolveResult",
    "dig_main",
    "query_wire",
    "resolve",
]
