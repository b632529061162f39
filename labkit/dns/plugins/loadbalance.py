"""loadbalance [round_robin]: shuffle the addresses of every NOERROR reply (plugin/loadbalance).

Each section becomes: CNAMEs first, then the other types in their order, then the A and AAAA records shuffled
together, then the MX records shuffled. AXFR/IXFR replies and replies with another rcode pass untouched. The
`weighted` policy (a weights file) is not built into labkit.
"""

from __future__ import annotations

import random

from labkit.dns import wire
from labkit.dns.plugin import Controller, Plugin
from labkit.dns.request import Msg, Reply, Request
from labkit.dns.wire import RR


def round_robin(rrs: list[RR]) -> list[RR]:
    if len(rrs) < 2:
        return rrs
    cname = [r for r in rrs if r.rtype == wire.CNAME]
    addr = [r for r in rrs if r.rtype in (wire.A, wire.AAAA)]
    mx = [r for r in rrs if r.rtype == wire.MX]
    rest = [r for r in rrs if r.rtype not in (wire.CNAME, wire.A, wire.AAAA, wire.MX)]
    random.shuffle(addr)
    random.shuffle(mx)
    return cname + rest + addr + mx


def shuffle(msg: Msg) -> Msg:
    msg.answer = round_robin(msg.answer)
    msg.authority = round_robin(msg.authority)
    msg.extra = round_robin(msg.extra)
    return msg


def _worth_shuffling(msg: Msg) -> bool:
    return any(sum(1 for r in sec if r.rtype in (wire.A, wire.AAAA, wire.MX)) > 1 for sec in msg.sections())


class LoadBalance(Plugin):
    name = "loadbalance"

    async def serve(self, req: Request) -> Reply:
        reply = await self.next_or_failure(req)
        msg = reply.msg
        if msg is None:
            return reply
        reply.writer = self.name  # its writer wraps every write (the metrics' plugin label)
        if msg.rcode != wire.NOERROR or (msg.question is not None and msg.question[1] in (wire.AXFR, wire.IXFR)):
            return reply
        if _worth_shuffling(msg):
            req.shuffle = True
            reply.msg = shuffle(msg.copy())
        return reply


def setup(c: Controller) -> None:
    while c.next():
        args = c.remaining_args()
        if not args:
            break
        if args[0] == "round_robin":
            if len(args) > 1:
                raise c.plugin_err(c.err(f"unknown property for {args[0]}"))
            break
        if args[0] == "weighted":
            raise c.plugin_err(c.err("policy 'weighted' is not built into labkit's CoreDNS"))
        raise c.plugin_err(f"unknown policy: {args[0]}")
    else:
        raise c.plugin_err(c.arg_err())
    c.add_plugin(LoadBalance())
