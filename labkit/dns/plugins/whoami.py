"""whoami: answers every query with the client's address and port in the additional section (plugin/whoami),
an A or AAAA record for the name asked and an SRV `_udp.NAME` (or `_tcp`) with the client's port. It is in
CoreDNS's default configuration (`.:53 { whoami log }`, when there is no Corefile).
"""

from __future__ import annotations

import ipaddress

from labkit.dns import request as rq
from labkit.dns import wire
from labkit.dns.plugin import Controller, Plugin
from labkit.dns.request import Reply, Request
from labkit.dns.wire import RR


class Whoami(Plugin):
    name = "whoami"

    async def serve(self, req: Request) -> Reply:
        req.memo = False  # the answer is the client's own address
        m = rq.reply_to(req)
        m.set_flag(wire.AA)
        ip = ipaddress.ip_address(req.remote_ip or "0.0.0.0")
        addr = RR(req.qname, wire.A if ip.version == 4 else wire.AAAA, 0, ip.packed, rclass=req.qclass)
        srv_name = (f"_{req.proto}".encode(), *req.qname)
        srv = RR(srv_name, wire.SRV, 0, (0, 0, req.remote_port, ()), rclass=req.qclass)
        m.extra = [addr, srv]
        return Reply(m, wire.NOERROR, None, self.name)


def setup(c: Controller) -> None:
    c.next()
    if c.next_arg():
        raise c.plugin_err(c.arg_err())
    c.add_plugin(Whoami())
