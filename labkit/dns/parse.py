"""Query-name grammar of the cluster zone (dns-rules.md §3; CoreDNS plugin/kubernetes/parse.go parseRequest).

The zone is removed first; the remaining labels (lower case) are read from the right:
`[<port>.<proto>. | <endpoint>.]<service>.<namespace>.<svc|pod>`.
"""

from __future__ import annotations

from dataclasses import dataclass

SVC = "svc"
POD = "pod"


class NameErrorResult(Exception):
    """The name cannot exist (CoreDNS errNoItems / errNsNotExposed / errInvalidRequest): NXDOMAIN."""


@dataclass(slots=True)
class RecordRequest:
    """What a name asks for. All fields lower case; empty when absent."""

    port: str = ""
    protocol: str = ""
    endpoint: str = ""
    service: str = ""
    namespace: str = ""
    pod_or_svc: str = ""


def _strip_underscore(label: str) -> str:
    # One leading underscore is removed if present: `_http._tcp` and `http.tcp` mean the same (quirk).
    return label[1:] if label.startswith("_") else label


def parse_request(labels: list[str]) -> RecordRequest:
    """labels: the query name's labels left of the zone, lower case. Raises NameErrorResult for invalid shapes."""
    r = RecordRequest()
    if not labels or labels == [SVC] or labels == [POD]:
        return r  # apex and subtree roots: the name exists, no data
    segs = list(labels)
    last = len(segs) - 1
    r.pod_or_svc = segs[last]
    if r.pod_or_svc not in (SVC, POD):
        raise NameErrorResult("neither svc nor pod")
    last -= 1
    if last < 0:
        return r
    r.namespace = segs[last]
    last -= 1
    if last < 0:
        return r
    r.service = segs[last]
    last -= 1
    if last < 0:
        return r
    if last == 0:
        r.endpoint = segs[0]
    elif last == 1:
        r.protocol = _strip_underscore(segs[1])
        r.port = _strip_underscore(segs[0])
    else:
        raise NameErrorResult("too many labels")
    return r
