"""rewrite [continue|stop] FIELD ...: change a query before the plugins below see it, and its reply on the way
back (plugin/rewrite).

- `name [exact|prefix|suffix|substring|regex] FROM TO [answer auto | answer name FROM TO | answer value FROM TO]`:
  the question's name. `exact` (the default) also writes the answer's names back to the name asked, so
  `rewrite name foo.example bar.example` makes `foo.example` answer with bar.example's records under its own
  name. Regex replacements use `{1}`, `{2}`...
- `type FROM TO`, `class FROM TO`: the question's type or class.
- `ttl [MATCH] NAME TTL|MIN-MAX`: the reply's TTLs; `rcode [MATCH] NAME FROM TO`: the reply's rcode (only
  when the reply holds at least one record, as CoreDNS applies response rules per record).
- Rules are tried in order; the first matching `stop` rule (the default mode) ends the list. The reply always
  carries the question as the client asked it.
- `edns0` and `cname` rules are not built into labkit.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace

import dns.name
import dns.rdataclass
import dns.rdatatype

from labkit.dns import request as rq
from labkit.dns import wire
from labkit.dns.plugin import Controller, Plugin
from labkit.dns.request import Msg, Reply, Request
from labkit.dns.wire import RR

MATCH_TYPES = ("exact", "prefix", "suffix", "substring", "regex")
StringRewriter = Callable[[str], str]


def _norm(name: str) -> str:
    """plugin.Name.Normalize: lower case, fully qualified."""
    return (name if name.endswith(".") else name + ".").lower()


def _regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error:
        raise ValueError(f"invalid regex matching pattern: {pattern}") from None


def _groups_used(text: str) -> int:
    return sum(1 for i in range(101) if "{" + str(i) + "}" in text)


def _check_regex(frm: str, to: str) -> re.Pattern[str]:
    pattern = _regex(frm)
    if _groups_used(to) > pattern.groups:
        raise ValueError(f"the rewrite regex pattern ({to}) uses more subexpressions than its corresponding "
                         f"matching regex pattern ({frm})")
    return pattern


def _substitute(m: re.Match[str], template: str) -> str:
    groups = [m.group(0), *m.groups()]
    for i, g in enumerate(groups):
        template = template.replace("{" + str(i) + "}", g or "")
    return template


def regex_rewriter(pattern: re.Pattern[str], replacement: str) -> StringRewriter:
    def rewrite(src: str) -> str:
        m = pattern.search(src)
        return _substitute(m, replacement) if m else src
    return rewrite


def remap_rewriter(orig: str, replacement: str) -> StringRewriter:
    def rewrite(src: str) -> str:
        if src == orig:
            return replacement
        if src.endswith("." + orig):
            return src[: len(src) - len(orig)] + replacement
        return src
    return rewrite


def suffix_rewriter(suffix: str, replacement: str) -> StringRewriter:
    def rewrite(src: str) -> str:
        return src[: len(src) - len(suffix)] + replacement if src.endswith(suffix) else src
    return rewrite


# A response rule changes one record of the reply (and may change the reply, for rcode).
ResponseRule = Callable[[Msg, RR], RR]


def name_response(rw: StringRewriter) -> ResponseRule:
    def apply(msg: Msg, rr: RR) -> RR:
        new = rw(wire.name_to_text(rr.name))
        return replace(rr, name=wire.name_from_text(new)) if new != wire.name_to_text(rr.name) else rr
    return apply


def value_response(rw: StringRewriter) -> ResponseRule:
    """Rewrites the name a record points to (CNAME, PTR, NS, SRV and MX targets, SOA mname)."""
    def apply(msg: Msg, rr: RR) -> RR:
        t, data = rr.rtype, rr.rdata
        if t in (wire.CNAME, wire.PTR, wire.NS):
            old = wire.name_to_text(data)  # type: ignore[arg-type]
            new = rw(old)
            return replace(rr, rdata=wire.name_from_text(new)) if new != old else rr
        if t == wire.SRV and isinstance(data, tuple):
            old = wire.name_to_text(data[3])
            new = rw(old)
            return replace(rr, rdata=(*data[:3], wire.name_from_text(new))) if new != old else rr
        if t == wire.MX and isinstance(data, tuple):
            old = wire.name_to_text(data[1])
            new = rw(old)
            return replace(rr, rdata=(data[0], wire.name_from_text(new))) if new != old else rr
        if t == wire.SOA and isinstance(data, tuple):
            old = wire.name_to_text(data[0])
            new = rw(old)
            return replace(rr, rdata=(wire.name_from_text(new), *data[1:])) if new != old else rr
        return rr
    return apply


def ttl_response(lo: int, hi: int) -> ResponseRule:
    def apply(msg: Msg, rr: RR) -> RR:
        if rr.ttl < lo:
            return replace(rr, ttl=lo)
        if rr.ttl > hi:
            return replace(rr, ttl=hi)
        return rr
    return apply


def rcode_response(old: int, new: int) -> ResponseRule:
    def apply(msg: Msg, rr: RR) -> RR:
        if msg.rcode == old:
            msg.rcode = new
        return rr
    return apply


class Rule:
    """One rewrite rule: `apply(req)` changes the request if it matches and returns its response rules, or
    None when it does not match."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def apply(self, req: Request) -> list[ResponseRule] | None:
        raise NotImplementedError


class NameRule(Rule):
    def __init__(self, mode: str, match: str, frm: str, to: str, auto: bool, responses: list[ResponseRule]) -> None:
        super().__init__(mode)
        self.match = match
        self.frm = frm
        self.to = to
        self.auto = auto
        self.responses = responses
        self.pattern = _check_regex(frm, to) if match == "regex" else None

    def _new_name(self, name: str) -> str | None:
        m, f, t = self.match, self.frm, self.to
        if m == "exact":
            return t if name == f else None
        if m == "prefix":
            return t + name[len(f) :] if name.startswith(f) else None
        if m == "suffix":
            return name[: len(name) - len(f)] + t if name.endswith(f) else None
        if m == "substring":
            return name.replace(f, t) if f in name else None
        hit = self.pattern.search(name) if self.pattern else None
        return _substitute(hit, t) if hit else None

    def apply(self, req: Request) -> list[ResponseRule] | None:
        name = req.name()
        new = self._new_name(name)
        if new is None:
            return None
        req.qname = _to_name(new)
        if not self.auto:
            return self.responses
        back = remap_rewriter(new, name)
        return [name_response(back), value_response(back), *self.responses]


class FieldRule(Rule):
    """`type` and `class` rules."""

    def __init__(self, mode: str, field: str, frm: int, to: int) -> None:
        super().__init__(mode)
        self.field = field
        self.frm = frm
        self.to = to

    def apply(self, req: Request) -> list[ResponseRule] | None:
        if getattr(req, self.field) != self.frm:
            return None
        setattr(req, self.field, self.to)
        return []


class ResponseOnlyRule(Rule):
    """`ttl` and `rcode` rules: a name match that only changes the reply."""

    def __init__(self, mode: str, match: str, name: str, response: ResponseRule) -> None:
        super().__init__(mode)
        self.match = match
        self.name = name if match == "regex" else _norm(name)
        self.pattern = _regex(name) if match == "regex" else None
        self.response = response

    def apply(self, req: Request) -> list[ResponseRule] | None:
        n, m, v = req.name(), self.match, self.name
        hit = {"exact": n == v, "prefix": n.startswith(v), "suffix": n.endswith(v), "substring": v in n,
               "regex": bool(self.pattern and self.pattern.search(n))}[m]
        return [self.response] if hit else None


def _to_name(text: str) -> wire.Name:
    try:
        dns.name.from_text(text)
    except Exception:
        raise _InvalidName(text) from None
    return wire.name_from_text(text)


class _InvalidName(Exception):
    pass


class Rewrite(Plugin):
    name = "rewrite"

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules

    async def serve(self, req: Request) -> Reply:
        original = req.question()
        responses: list[ResponseRule] = []
        matched = False
        for rule in self.rules:
            try:
                got = rule.apply(req)
            except _InvalidName as exc:
                req.qname, req.qtype, req.qclass = original
                return Reply(None, wire.SERVFAIL, f"invalid name after rewrite: {exc}")
            if got is None:
                continue
            matched = True
            responses += got
            if rule.mode == "stop":
                reply = await self.next_or_failure(req)
                if reply.msg is None and not rq.client_write(reply.rcode):
                    msg = rq.error_msg(req, reply.rcode)
                    return Reply(_revert(msg, original, responses), wire.NOERROR, reply.err, self.name)
                return self._reverted(reply, original, responses)
        reply = await self.next_or_failure(req)
        return self._reverted(reply, original, responses) if matched else reply

    def _reverted(self, reply: Reply, original: tuple[wire.Name, int, int], rules: list[ResponseRule]) -> Reply:
        if reply.msg is None:
            return reply
        return Reply(_revert(reply.msg, original, rules), reply.rcode, reply.err, self.name)


def _revert(msg: Msg, original: tuple[wire.Name, int, int], rules: list[ResponseRule]) -> Msg:
    """ResponseReverter.WriteMsg: the question as asked, then every response rule on every record."""
    out = msg.copy()
    out.question = original
    if rules:
        for section in ("authority", "answer", "extra"):
            new = []
            for rr in getattr(out, section):
                if rr.rtype != wire.OPT:
                    for rule in rules:
                        rr = rule(out, rr)
                new.append(rr)
            setattr(out, section, new)
    return out


# ------------------------------------------------------------------------------------------------ setup


def _valid_ttl(v: str) -> tuple[int, int] | None:
    parts = v.split("-")
    try:
        if len(parts) == 1:
            return int(parts[0]), int(parts[0])
        if len(parts) == 2:
            if not parts[0] and not parts[1]:
                return None
            lo = int(parts[0]) if parts[0] else 0
            hi = int(parts[1]) if parts[1] else 2147483647
            return (lo, hi) if lo <= hi else None
    except ValueError:
        return None
    return None


def _rcode(v: str) -> int | None:
    if v.isdigit() and int(v) <= 23:
        return int(v)
    return rq.RCODE_BY_NAME.get(v.upper())


def _answer_rules(name: str, args: list[str]) -> tuple[bool, list[ResponseRule]]:
    """parseAnswerRules: `answer auto`, `answer name FROM TO`, `answer value FROM TO`."""
    if len(args) < 2:
        raise ValueError(f"invalid arguments for {name} rule")
    auto = False
    rules: list[ResponseRule] = []
    names = 0
    i = 0
    last = ""
    while i < len(args):
        if last == "" and args[i] != "answer":
            raise ValueError(f"exceeded the number of arguments for a non-answer rule argument for {name} rule")
        if args[i] == "answer":
            i += 1
        if i >= len(args):
            raise ValueError(f"type missing for answer rule for {name} rule")
        last = args[i]
        i += 1
        if last == "auto":
            auto = True
            continue
        if last in ("name", "value"):
            if len(args) - i < 2:
                raise ValueError(f"{last} answer rule for {name} rule: 2 arguments required")
            frm, to = args[i], args[i + 1]
            try:
                pattern = _check_regex(frm, to)
            except ValueError as exc:
                raise ValueError(f"{last} answer rule for {name} rule: {exc}") from None
            rw = regex_rewriter(pattern, _norm(to))
            rules.append(name_response(rw) if last == "name" else value_response(rw))
            names += last == "name"
            i += 2
            continue
        raise ValueError(f'invalid type "{last}" for answer rule for {name} rule')
    if auto and names:
        raise ValueError("auto name answer rule cannot be combined with explicit name anwer rules")
    return auto, rules


def new_rule(args: list[str]) -> Rule:
    """newRule: one `rewrite` line."""
    if not args:
        raise ValueError("no rule type specified for rewrite")
    mode = "stop"
    first = args[0].lower()
    if first in ("continue", "stop"):
        if len(args) < 2:
            raise ValueError(f"{first} rule must begin with a rule type")
        mode = first
        args = args[1:]
    kind = args[0].lower()
    rest = args[1:]
    if kind == "answer":
        raise ValueError("response rewrites must begin with a name rule")
    if kind == "name":
        return _name_rule(mode, rest)
    if kind in ("type", "class"):
        if len(rest) != 2:
            raise ValueError(f"{kind} rules must have exactly two arguments")
        if kind == "type":
            try:
                frm, to = (dns.rdatatype.from_text(a.upper()) for a in rest)
            except Exception:
                bad = next(a for a in rest if not _is_type(a))
                raise ValueError(f'invalid type "{bad.upper()}"') from None
            return FieldRule(mode, "qtype", frm, to)
        try:
            frm, to = (dns.rdataclass.from_text(a.upper()) for a in rest)
        except Exception:
            raise ValueError(f'invalid class "{rest[0].upper()}"') from None
        return FieldRule(mode, "qclass", frm, to)
    if kind == "ttl":
        return _ttl_rule(mode, rest)
    if kind == "rcode":
        return _rcode_rule(mode, rest)
    if kind in ("edns0", "cname"):
        raise ValueError(f"{kind} rules are not built into labkit's CoreDNS")
    raise ValueError(f'invalid rule type "{args[0]}"')


def _is_type(a: str) -> bool:
    try:
        dns.rdatatype.from_text(a.upper())
        return True
    except Exception:
        return False


def _name_rule(mode: str, args: list[str]) -> Rule:
    if len(args) < 2:
        raise ValueError("too few arguments for a name rule")
    if len(args) == 2:
        match, frm, to = "exact", _norm(args[0]), _norm(args[1])
    else:
        match = args[0].lower()
        frm, to = (args[1], args[2]) if match == "regex" else (_norm(args[1]), _norm(args[2]))
        if match not in MATCH_TYPES:
            raise ValueError("name rule supports only exact, prefix, suffix, substring, and regex name matching, "
                             f"received: {match}")
    auto, responses = (False, [])
    if len(args) > 3:
        auto, responses = _answer_rules(match, args[3:])
    if match == "exact":
        _check_regex(frm, to)
        return NameRule(mode, match, frm, to, True, responses)
    if match == "suffix":
        if auto:
            back = suffix_rewriter(to, frm)
            responses = [name_response(back), value_response(back), *responses]
        return NameRule(mode, match, frm, to, False, responses)
    if match == "regex":
        rule = NameRule(mode, match, frm, _norm(args[2]), auto, responses)
        _check_regex(frm, args[2])
        return rule
    return NameRule(mode, match, frm, to, auto, responses)


def _ttl_rule(mode: str, args: list[str]) -> Rule:
    if len(args) < 2:
        raise ValueError(f"too few ({len(args)}) arguments for a ttl rule")
    if len(args) > 3:
        raise ValueError("many few arguments for a ttl rule")
    value = args[-1]
    bounds = _valid_ttl(value)
    if bounds is None:
        raise ValueError(f"invalid TTL '{value}' for a ttl rule")
    match, name = ("exact", args[0]) if len(args) == 2 else (args[0].lower(), args[1])
    if match not in MATCH_TYPES:
        raise ValueError("ttl rule supports only exact, prefix, suffix, substring, and regex name matching")
    return ResponseOnlyRule(mode, match, name, ttl_response(*bounds))


def _rcode_rule(mode: str, args: list[str]) -> Rule:
    if len(args) < 3:
        raise ValueError(f"too few ({len(args)}) arguments for a rcode rule")
    if len(args) > 4:
        raise ValueError("many few arguments for a rcode rule")
    old_s, new_s = args[-2], args[-1]
    old, new = _rcode(old_s), _rcode(new_s)
    if old is None:
        raise ValueError(f"invalid matching RCODE '{old_s}' for a rcode rule")
    if new is None:
        raise ValueError(f"invalid replacement RCODE '{new_s}' for a rcode rule")
    match, name = ("exact", args[0]) if len(args) == 3 else (args[0].lower(), args[1])
    if match not in MATCH_TYPES:
        raise ValueError("rcode rule supports only exact, prefix, suffix, substring, and regex name matching")
    return ResponseOnlyRule(mode, match, name, rcode_response(old, new))


def setup(c: Controller) -> None:
    rules: list[Rule] = []
    while c.next():
        args = c.remaining_args()
        if len(args) < 2:
            while c.next_block():
                args.append(c.val())
        try:
            rules.append(new_rule(args))
        except ValueError as exc:
            raise c.plugin_err(exc) from None
    c.add_plugin(Rewrite(rules))
