"""log [NAMES...] [FORMAT] { class success|denial|error|all }: one line per query on stdout (plugin/log).

The default (`{common}`) line, as `kubectl logs` shows it for a coredns pod:

    [INFO] 10.244.0.5:43211 - 8931 "A IN web.default.svc.cluster.local. udp 58 false 512" NOERROR qr,aa,rd 106 0.000170s

Fields (plugin/pkg/replacer): `{remote}` (IPv6 in brackets), `{port}`, `{>id}`, `{type}`, `{class}`, `{name}`
(lower case), `{proto}`, `{size}` (the query's length), `{>do}`, `{>bufsize}` (512 without EDNS, 65535 over
TCP), `{rcode}`, `{>rflags}` (qr,aa,tc,rd,ra,z,ad,cd), `{rsize}` (the reply's length as the plugin below wrote
it: before the server adds the client's OPT or truncates), `{duration}` (seconds, Go's shortest form), `{>opcode}`,
`{local}`; unknown `{...}` stay as written, `{/metadata}` is `-`. When nothing was written (every upstream failed),
`{rcode}` and `{>rflags}` are `-` and `{rsize}` is 0.

The first rule whose NAME the query falls under decides; its classes filter by the reply's type
(success = NOERROR with data or a delegation, denial = NXDOMAIN or NODATA, error = the rest). `log` sits before
`cache` in the chain, so cache hits are logged too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

from labkit.dns import request as rq
from labkit.dns import wire
from labkit.dns.plugin import Controller, Log, Plugin
from labkit.dns.request import Msg, Reply, Request

COMMON = ('{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}" '
          "{rcode} {>rflags} {rsize} {duration}")
COMBINED = COMMON + ' "{>opcode}"'
LABELS = {"{type}", "{name}", "{class}", "{proto}", "{size}", "{remote}", "{port}", "{local}", "{>id}",
          "{>opcode}", "{>do}", "{>bufsize}", "{rcode}", "{rsize}", "{duration}", "{>rflags}"}
CLASSES = {"all", "success", "denial", "error"}
FLAG_BITS = (("qr", wire.QR), ("aa", wire.AA), ("tc", wire.TC), ("rd", wire.RD), ("ra", wire.RA), ("z", 0x0040),
             ("ad", wire.AD), ("cd", wire.CD))


def parse_format(fmt: str) -> list[tuple[bool, str]]:
    """replacer.parseFormat: (is_label, text) nodes."""
    out: list[tuple[bool, str]] = []
    while True:
        j = fmt.find("}")
        if j < 0:
            break
        i = fmt.rfind("{", 0, j)
        if i < 0:
            out.append((False, fmt[: j + 1]))
            fmt = fmt[j + 1 :]
            continue
        val = fmt[i : j + 1]
        if val in LABELS:
            if i > 0:
                out.append((False, fmt[:i]))
            out.append((True, val))
        elif val.startswith("{/"):
            if i > 0:
                out.append((False, fmt[:i]))
            out.append((False, "-"))  # no metadata plugin: empty value
        else:
            out.append((False, fmt[: j + 1]))
        fmt = fmt[j + 1 :]
    if fmt:
        out.append((False, fmt))
    return out


def go_float(x: float) -> str:
    """strconv.FormatFloat(x, 'f', -1, 64): the shortest digits, never an exponent."""
    text = repr(x)
    return format(Decimal(text), "f") if "e" in text or "E" in text else text


def rflags(flags: int) -> str:
    return ",".join(name for name, bit in FLAG_BITS if flags & bit)


def _addr(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


class Rule:
    def __init__(self, scope: str, fmt: str, classes: set[str]) -> None:
        self.scope = scope
        self.nodes = parse_format(fmt)
        self.classes = classes

    def matches(self, name: str) -> bool:
        return self.scope == "." or name == self.scope or name.endswith("." + self.scope)


def _fixed_values(req: Request, name: str, msg: Msg | None) -> dict[str, str]:
    """Every field except the ones that change per packet (remote, port, id, duration)."""
    return {
        "{type}": rq.type_name(req.qtype), "{name}": name, "{class}": rq.class_name(req.qclass),
        "{proto}": req.proto, "{size}": str(len(req.data)), "{>opcode}": str(req.opcode),
        "{>do}": "true" if req.do else "false", "{>bufsize}": str(req.size()), "{local}": "-",
        "{rcode}": "-" if msg is None else rq.RCODE_NAMES.get(msg.rcode, str(msg.rcode)),
        "{>rflags}": "-" if msg is None else rflags(msg.flags),
        "{rsize}": "0" if msg is None else str(msg.length()),
    }  # fmt: skip


def line_maker(rule: Rule, fixed: dict[str, str]) -> Callable[[str, int, int, float], str]:
    """A function of (remote ip, port, id, start) giving the log line."""
    parts = [(is_label, fixed.get(text, text) if is_label else text) for is_label, text in rule.nodes]

    def make(ip: str, port: int, qid: int, t0: float) -> str:
        per = {"{remote}": _addr(ip), "{port}": str(port), "{>id}": str(qid),
               "{duration}": go_float(round(time.perf_counter() - t0, 9)) + "s"}
        return "".join(per.get(text, text) if is_label else text for is_label, text in parts)

    return make


class Logger(Plugin):
    name = "log"

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules

    async def serve(self, req: Request) -> Reply:
        name = req.name()  # captured now: plugins below may rewrite the question
        for rule in self.rules:
            if not rule.matches(name):
                continue
            reply = await self.next_or_failure(req)
            if "all" not in rule.classes and rq.classify(rq.typify(reply.msg)) not in rule.classes:
                return reply
            make = line_maker(rule, _fixed_values(req, name, reply.msg))
            Log.write("[INFO] " + make(req.remote_ip, req.remote_port, req.id, req.start))
            req.hooks.append(lambda ip, port, qid, t0, make=make: Log.write("[INFO] " + make(ip, port, qid, t0)))
            return reply
        return await self.next_or_failure(req)


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else name + "."


def setup(c: Controller) -> None:
    rules: list[Rule] = []
    while c.next():
        args = c.remaining_args()
        first = len(rules)
        if not args:
            rules.append(Rule(".", COMMON, set()))
        elif len(args) == 1:
            rules.append(Rule(_fqdn(args[0]).lower(), COMMON, set()))
        else:
            fmt = COMMON
            if "{" in args[-1]:
                fmt = args[-1].replace("{common}", COMMON).replace("{combined}", COMBINED)
                args = args[:-1]
            rules += [Rule(_fqdn(a).lower(), fmt, set()) for a in args]
        classes: set[str] = set()
        while c.next_block():
            if c.val() != "class":
                raise c.plugin_err(c.arg_err())
            values = c.remaining_args()
            if not values:
                raise c.plugin_err(c.arg_err())
            for v in values:
                if v not in CLASSES:
                    raise c.plugin_err(f"invalid Class: {v}")
                classes.add(v)
        for rule in rules[first:]:
            rule.classes = classes or {"all"}
    c.add_plugin(Logger(rules))
