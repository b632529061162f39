"""labkit's cluster DNS: a CoreDNS-compatible server driven by a Corefile (coredns.py, plugins/), whose
`kubernetes` plugin answers cluster.local as CoreDNS's does (records.py; dns-rules.md), the "outside world"
resolver (upstream.py), and the `dig`/`resolve` helpers."""

# `dig` the function lives in labkit.dns.dig (not re-exported here: it would shadow the submodule).
from labkit.dns.coredns import CoreDNS, Environment
from labkit.dns.dig import DigResult, ResolveResult, dig_main, query_wire, resolve
from labkit.dns.index import ClusterIndex
from labkit.dns.records import Lookup
from labkit.dns.server import Listener

__all__ = [
    "ClusterIndex",
    "CoreDNS",
    "DigResult",
    "Environment",
    "Listener",
    "Lookup",
    "ResolveResult",
    "dig_main",
    "query_wire",
    "resolve",
]
