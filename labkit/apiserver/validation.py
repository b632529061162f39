"""Server-side validation of objects, with upstream's exact error texts.

`validate(kind, obj, old)` returns the list of `causes` a 422 Status carries:
`{"reason": "FieldValueInvalid", "message": "Invalid value: ...", "field": "spec.ports[0].port"}`.
Rules, their order and their wording follow Kubernetes 1.32 (the version labkit's
`/version` reports):

- k8s.io/apimachinery/pkg/util/validation/validation.go  (name/label/port/IP rules and texts)
- k8s.io/apimachinery/pkg/util/validation/field/errors.go (how a cause's message is built)
- k8s.io/apimachinery/pkg/api/validation/objectmeta.go   (metadata)
- pkg/apis/core/validation/validation.go                  (Service, Pod, Endpoints, Namespace, Event)
- pkg/apis/apps/validation/validation.go                  (Deployment, ReplicaSet, StatefulSet)
- pkg/apis/discovery/validation/validation.go             (EndpointSlice)

Objects are validated after defaulting (the API server runs `apply_defaults` first), so
a missing `protocol` or `sessionAffinity` is an error here just as it is upstream. Values
that JSON decoding would have rejected upstream (a string where an int belongs) are
tolerated rather than crashing the server.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from labkit.kinds import ResourceKind

Cause = dict[str, str]

# ---------------------------------------------------------------------------
# field.Error: how each cause's message is built (1.32 ErrorBody)
# ---------------------------------------------------------------------------


class GoValue(str):
    """A value already rendered the way Go's `%#v` prints it (structs, maps, slices)."""


def _go_quote(s: str) -> str:
    """Go's `%q` for ordinary strings (json escaping matches it for printable text)."""
    return json.dumps(s, ensure_ascii=False)


def go_repr(value: Any) -> str:
    """Render a bad value as field.Error.ErrorBody does in Kubernetes 1.32."""
    if isinstance(value, GoValue):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return _go_quote(value)
    if isinstance(value, dict):
        return go_map(value)
    if isinstance(value, list):
        return go_string_slice(value)
    return str(value)


def go_map(m: dict | None) -> GoValue:
    """`%#v` of a map[string]string: keys sorted, `map[string]string(nil)` for nil."""
    if m is None:
        return GoValue("map[string]string(nil)")
    items = ", ".join(f"{_go_quote(str(k))}:{_go_quote(str(v))}" for k, v in sorted(m.items()))
    return GoValue("map[string]string{" + items + "}")


def go_string_slice(values: list | None) -> GoValue:
    """`%#v` of a []string."""
    if values is None:
        return GoValue("[]string(nil)")
    return GoValue("[]string{" + ", ".join(_go_quote(str(v)) for v in values) + "}")


def _cause(reason: str, field: str, body: str) -> Cause:
    return {"reason": reason, "message": body, "field": field}


def required(field: str, detail: str = "") -> Cause:
    return _cause("FieldValueRequired", field, "Required value" + (f": {detail}" if detail else ""))


def forbidden(field: str, detail: str = "") -> Cause:
    return _cause("FieldValueForbidden", field, "Forbidden" + (f": {detail}" if detail else ""))


def invalid(field: str, value: Any, detail: str = "") -> Cause:
    return _cause("FieldValueInvalid", field, f"Invalid value: {go_repr(value)}" + (f": {detail}" if detail else ""))


def duplicate(field: str, value: Any) -> Cause:
    return _cause("FieldValueDuplicate", field, f"Duplicate value: {go_repr(value)}")


def not_supported(field: str, value: Any, valid: Iterable[str]) -> Cause:
    detail = "supported values: " + ", ".join(_go_quote(v) for v in valid)
    return _cause("FieldValueNotSupported", field, f"Unsupported value: {go_repr(value)}: {detail}")


def too_long(field: str, max_length: int) -> Cause:
    unit = "byte" if max_length == 1 else "bytes"
    return _cause("FieldValueTooLong", field, f"Too long: may not be more than {max_length} {unit}")


def too_many(field: str, actual: int, max_items: int) -> Cause:
    unit = "item" if max_items == 1 else "items"
    return _cause("FieldValueTooMany", field, f"Too many: {actual}: must have at most {max_items} {unit}")


# ---------------------------------------------------------------------------
# apimachinery/pkg/util/validation: the string checks, returning messages
# ---------------------------------------------------------------------------

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE_FMT = "(" + _QNAME_FMT + ")?"

_DNS1123_LABEL_RE = re.compile(f"^{_DNS1123_LABEL_FMT}$")
_DNS1123_SUBDOMAIN_RE = re.compile(f"^{_DNS1123_SUBDOMAIN_FMT}$")
_DNS1035_LABEL_RE = re.compile(f"^{_DNS1035_LABEL_FMT}$")
_QNAME_RE = re.compile(f"^{_QNAME_FMT}$")
_LABEL_VALUE_RE = re.compile(f"^{_LABEL_VALUE_FMT}$")
_PORT_NAME_CHARSET_RE = re.compile(r"^[-a-z0-9]+$")
_PORT_NAME_ONE_LETTER_RE = re.compile(r"[a-z]")
_PERCENT_RE = re.compile(r"^[0-9]+%$")

_DNS1123_LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                      "and must start and end with an alphanumeric character")
_DNS1123_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                          "'-' or '.', and must start and end with an alphanumeric character")
_DNS1035_LABEL_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                      "start with an alphabetic character, and end with an alphanumeric character")
_QNAME_MSG = ("must consist of alphanumeric characters, '-', '_' or '.', "
              "and must start and end with an alphanumeric character")
_LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                    "and must start and end with an alphanumeric character")
_RELAXED_ENV_MSG = "a valid environment variable name must consist only of printable ASCII characters other than '='"

FIELD_IMMUTABLE = "field is immutable"
IS_NEGATIVE = "must be greater than or equal to 0"


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    """validation.RegexError, including its double space before `or` (upstream's quirk)."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def max_len_error(n: int) -> str:
    return f"must be no more than {n} characters"


def inclusive_range_error(lo: int, hi: int) -> str:
    return f"must be between {lo} and {hi}, inclusive"


def is_dns1123_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _DNS1123_LABEL_RE.match(value):
        if _DNS1123_SUBDOMAIN_RE.match(value):
            errs.append("must not contain dots")
        else:
            errs.append(regex_error(_DNS1123_LABEL_MSG, _DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _DNS1123_SUBDOMAIN_RE.match(value):
        errs.append(regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _DNS1035_LABEL_RE.match(value):
        errs.append(regex_error(_DNS1035_LABEL_MSG, _DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def is_qualified_name(value: str) -> list[str]:
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs += ["prefix part " + m for m in is_dns1123_subdomain(prefix)]
    else:
        return ["a qualified name " + regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + max_len_error(63))
    if not _QNAME_RE.match(name):
        errs.append("name part " + regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc"))
    return errs


def is_valid_label_value(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _LABEL_VALUE_RE.match(value):
        errs.append(regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def is_valid_port_num(port: Any) -> list[str]:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        return [inclusive_range_error(1, 65535)]
    return []


def is_valid_port_name(port: str) -> list[str]:
    """IANA_SVC_NAME rules."""
    errs = []
    if len(port) > 15:
        errs.append(max_len_error(15))
    if not _PORT_NAME_CHARSET_RE.match(port):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not _PORT_NAME_ONE_LETTER_RE.search(port):
        errs.append("must contain at least one letter (a-z)")
    if "--" in port:
        errs.append("must not contain consecutive hyphens")
    if port and (port[0] == "-" or port[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def _parse_ip(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """netutils.ParseIPSloppy: also accepts IPv4 octets with leading zeros."""
    if not isinstance(value, str) or not value:
        return None
    return _parse_ip_text(value)


@functools.lru_cache(maxsize=8192)
def _parse_ip_text(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    # Remembered: the same pod IPs come back in every Endpoints and EndpointSlice write (addresses are immutable).
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        pass
    parts = value.split(".")
    if len(parts) == 4 and all(p.isdigit() and len(p) <= 3 for p in parts):
        try:
            return ipaddress.IPv4Address(".".join(str(int(p)) for p in parts))
        except ValueError:
            return None
    return None


def is_valid_ip(field: str, value: Any) -> list[Cause]:
    if _parse_ip(value) is None:
        return [invalid(field, value, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")]
    return []


def validate_non_special_ip(value: str, field: str) -> list[Cause]:
    ip = _parse_ip(value)
    if ip is None:
        return [invalid(field, value, "must be a valid IP address")]
    return [invalid(field, value, message.replace("{value}", value)) for message in _special_ip_messages(ip)]


_LINK_LOCAL_MULTICAST = {4: ipaddress.ip_network("224.0.0.0/24"), 6: ipaddress.ip_network("ff02::/16")}


@functools.lru_cache(maxsize=8192)
def _special_ip_messages(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[str, ...]:
    """Why an endpoint may not use this address (ValidateNonSpecialIP), if it may not."""
    out = []
    if ip.is_unspecified:
        out.append("may not be unspecified ({value})")
    if ip.is_loopback:
        out.append("may not be in the loopback range (127.0.0.0/8, ::1/128)")
    if ip.is_link_local and not ip.is_multicast:
        out.append("may not be in the link-local range (169.254.0.0/16, fe80::/10)")
    if ip in _LINK_LOCAL_MULTICAST[ip.version]:
        out.append("may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)")
    return tuple(out)


# Name validators: (name, prefix) -> messages, as in apimachinery's NameIs* functions.
NameFn = Callable[[str, bool], list[str]]


def _mask_trailing_dash(name: str) -> str:
    return name[:-2] + "a" if len(name) > 1 and name.endswith("-") else name


def name_is_dns_subdomain(name: str, prefix: bool) -> list[str]:
    return is_dns1123_subdomain(_mask_trailing_dash(name) if prefix else name)


def name_is_dns_label(name: str, prefix: bool) -> list[str]:
    return is_dns1123_label(_mask_trailing_dash(name) if prefix else name)


def name_is_dns1035_label(name: str, prefix: bool) -> list[str]:
    return is_dns1035_label(_mask_trailing_dash(name) if prefix else name)


# ---------------------------------------------------------------------------
# small helpers for loosely-typed JSON
# ---------------------------------------------------------------------------


def _d(v: Any) -> dict:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list:
    return v if isinstance(v, list) else []


def _s(v: Any) -> str:
    return v if isinstance(v, str) else ""


def _i(v: Any, default: int = 0) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else default


def _path(base: str, child: str) -> str:
    return f"{base}.{child}" if base else child


# ---------------------------------------------------------------------------
# metadata (apimachinery/pkg/api/validation/objectmeta.go)
# ---------------------------------------------------------------------------

TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024


def validate_labels(labels: Any, field: str) -> list[Cause]:
    errs = []
    for k, v in _d(labels).items():
        errs += [invalid(field, k, m) for m in is_qualified_name(str(k))]
        value = v if isinstance(v, str) else str(v)
        errs += [invalid(field, value, m) for m in is_valid_label_value(value)]
    return errs


def validate_annotations(annotations: Any, field: str) -> list[Cause]:
    errs = []
    total = 0
    for k, v in _d(annotations).items():
        errs += [invalid(field, k, m) for m in is_qualified_name(str(k).lower())]
        total += len(str(k)) + len(_s(v))
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.append(too_long(field, TOTAL_ANNOTATION_SIZE_LIMIT))
    return errs


def validate_object_meta(meta: Any, namespaced: bool, name_fn: NameFn, field: str = "metadata") -> list[Cause]:
    meta = _d(meta)
    errs: list[Cause] = []
    gen = _s(meta.get("generateName"))
    if gen:
        errs += [invalid(f"{field}.generateName", gen, m) for m in name_fn(gen, True)]
    name = _s(meta.get("name"))
    if not name:
        errs.append(required(f"{field}.name", "name or generateName is required"))
    else:
        errs += [invalid(f"{field}.name", name, m) for m in name_fn(name, False)]
    ns = _s(meta.get("namespace"))
    if namespaced:
        if not ns:
            errs.append(required(f"{field}.namespace"))
        else:
            errs += [invalid(f"{field}.namespace", ns, m) for m in name_is_dns_label(ns, False)]
    elif ns:
        errs.append(forbidden(f"{field}.namespace", "not allowed on this type"))
    generation = meta.get("generation")
    if isinstance(generation, int) and generation < 0:
        errs.append(invalid(f"{field}.generation", generation, IS_NEGATIVE))
    errs += validate_labels(meta.get("labels"), f"{field}.labels")
    errs += validate_annotations(meta.get("annotations"), f"{field}.annotations")
    for i, ref in enumerate(_l(meta.get("ownerReferences"))):
        ref = _d(ref)
        p = f"{field}.ownerReferences[{i}]"
        if not _s(ref.get("apiVersion")):
            errs.append(invalid(f"{p}.apiVersion", _s(ref.get("apiVersion")), "version must not be empty"))
        if not _s(ref.get("kind")):
            errs.append(invalid(f"{p}.kind", _s(ref.get("kind")), "kind must not be empty"))
        if not _s(ref.get("name")):
            errs.append(invalid(f"{p}.name", _s(ref.get("name")), "name must not be empty"))
        if not _s(ref.get("uid")):
            errs.append(invalid(f"{p}.uid", _s(ref.get("uid")), "uid must not be empty"))
    for i, fin in enumerate(_l(meta.get("finalizers"))):
        fin = _s(fin)
        for m in is_qualified_name(fin):
            errs.append(invalid(f"{field}.finalizers[{i}]", fin, m))
        if "/" not in fin and fin not in _STANDARD_FINALIZERS:
            errs.append(invalid(f"{field}.finalizers[{i}]", fin,
                                "name is neither a standard finalizer name nor is it fully qualified"))
    return errs


_STANDARD_FINALIZERS = {"kubernetes", "orphan", "foregroundDeletion"}


def validate_object_meta_update(new: Any, old: Any, field: str = "metadata") -> list[Cause]:
    """Name and namespace may not change (uid, timestamps and resourceVersion are the server's)."""
    new, old = _d(new), _d(old)
    errs = []
    for key in ("name", "namespace"):
        if _s(new.get(key)) != _s(old.get(key)):
            errs.append(invalid(f"{field}.{key}", _s(new.get(key)), FIELD_IMMUTABLE))
    return errs


def validate_label_selector(sel: Any, field: str) -> list[Cause]:
    """metav1 validation.ValidateLabelSelector (strict label values)."""
    sel = _d(sel)
    errs = []
    for i, req in enumerate(_l(sel.get("matchExpressions"))):
        req = _d(req)
        p = f"{field}.matchExpressions[{i}]"
        op = _s(req.get("operator"))
        values = _l(req.get("values"))
        if op in ("In", "NotIn"):
            if not values:
                errs.append(required(f"{p}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                errs.append(forbidden(f"{p}.values",
                                      "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        else:
            errs.append(invalid(f"{p}.operator", op, "not a valid selector operator"))
        key = _s(req.get("key"))
        errs += [invalid(f"{p}.key", key, m) for m in is_qualified_name(key)]
        for j, v in enumerate(values):
            errs += [invalid(f"{p}.values[{j}]", _s(v), m) for m in is_valid_label_value(_s(v))]
    errs += validate_labels(sel.get("matchLabels"), f"{field}.matchLabels")
    return errs


def label_selector_repr(sel: dict | None) -> GoValue:
    """`%#v` of a metav1.LabelSelector, as `field is immutable` errors print it."""
    if sel is None:
        return GoValue("null")
    ml = sel.get("matchLabels")
    exprs = sel.get("matchExpressions")
    if exprs is None:
        exprs_s = "[]v1.LabelSelectorRequirement(nil)"
    else:
        reqs = []
        for r in _l(exprs):
            r = _d(r)
            vals = r.get("values")
            reqs.append(f'v1.LabelSelectorRequirement{{Key:{_go_quote(_s(r.get("key")))}, '
                        f'Operator:{_go_quote(_s(r.get("operator")))}, Values:{go_string_slice(vals)}}}')
        exprs_s = "[]v1.LabelSelectorRequirement{" + ", ".join(reqs) + "}"
    return GoValue(f"v1.LabelSelector{{MatchLabels:{go_map(ml)}, MatchExpressions:{exprs_s}}}")


def selector_matches(sel: Any, labels: dict) -> bool:
    """metav1.LabelSelectorAsSelector(sel).Matches(labels); a nil selector matches nothing."""
    if not isinstance(sel, dict):
        return False
    for k, v in _d(sel.get("matchLabels")).items():
        if labels.get(k) != v:
            return False
    for req in _l(sel.get("matchExpressions")):
        req = _d(req)
        key, op, values = _s(req.get("key")), _s(req.get("operator")), _l(req.get("values"))
        has = key in labels
        if (op == "In" and (not has or labels[key] not in values)) \
                or (op == "NotIn" and has and labels[key] in values) \
                or (op == "Exists" and not has) or (op == "DoesNotExist" and has):
            return False
    return True


# ---------------------------------------------------------------------------
# Pods and pod templates (core validation)
# ---------------------------------------------------------------------------

PROTOCOLS = ("SCTP", "TCP", "UDP")  # sets.List(supportedPortProtocols): sorted


def validate_port_num_or_name(port: Any, field: str) -> list[Cause]:
    if isinstance(port, int) and not isinstance(port, bool):
        return [invalid(field, port, m) for m in is_valid_port_num(port)]
    if isinstance(port, str):
        return [invalid(field, port, m) for m in is_valid_port_name(port)]
    return [_cause("InternalError", field, f"Internal error: unknown type: {type(port).__name__}")]


def _validate_container_ports(ports: Any, field: str) -> list[Cause]:
    errs: list[Cause] = []
    names: set[str] = set()
    for i, port in enumerate(_l(ports)):
        port = _d(port)
        p = f"{field}[{i}]"
        name = _s(port.get("name"))
        if name:
            msgs = is_valid_port_name(name)
            if msgs:
                errs += [invalid(f"{p}.name", name, m) for m in msgs]
            elif name in names:
                errs.append(duplicate(f"{p}.name", name))
            else:
                names.add(name)
        cp = port.get("containerPort")
        if not cp:
            errs.append(required(f"{p}.containerPort"))
        else:
            errs += [invalid(f"{p}.containerPort", cp, m) for m in is_valid_port_num(cp)]
        hp = port.get("hostPort")
        if hp:
            errs += [invalid(f"{p}.hostPort", hp, m) for m in is_valid_port_num(hp)]
        proto = _s(port.get("protocol"))
        if not proto:
            errs.append(required(f"{p}.protocol"))
        elif proto not in PROTOCOLS:
            errs.append(not_supported(f"{p}.protocol", proto, PROTOCOLS))
    return errs


def _validate_env(env: Any, field: str) -> list[Cause]:
    errs = []
    for i, ev in enumerate(_l(env)):
        ev = _d(ev)
        name = _s(ev.get("name"))
        if not name:
            errs.append(required(f"{field}[{i}].name"))
        elif any(ord(c) > 126 or ord(c) < 32 or c == "=" for c in name):
            errs.append(invalid(f"{field}[{i}].name", name, _RELAXED_ENV_MSG))
    return errs


_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")


def _validate_probe(probe: Any, field: str, liveness_like: bool) -> list[Cause]:
    if not isinstance(probe, dict):
        return []
    errs: list[Cause] = []
    handlers = [h for h in _HANDLERS if probe.get(h) is not None]
    if not handlers:
        errs.append(required(field, "must specify a handler type"))
    elif len(handlers) > 1:
        errs.append(forbidden(f"{field}.{handlers[1]}", "may not specify more than 1 handler type"))
    for h in handlers[:1]:
        action = _d(probe.get(h))
        if h in ("httpGet", "tcpSocket"):
            errs += validate_port_num_or_name(action.get("port"), f"{field}.{h}.port")
        if h == "httpGet" and _s(action.get("scheme")) not in ("HTTP", "HTTPS"):
            errs.append(not_supported(f"{field}.{h}.scheme", _s(action.get("scheme")), ("HTTP", "HTTPS")))
    for key in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        v = probe.get(key)
        if isinstance(v, int) and v < 0:
            errs.append(invalid(f"{field}.{key}", v, IS_NEGATIVE))
    if liveness_like and probe.get("successThreshold") not in (None, 1):
        errs.append(invalid(f"{field}.successThreshold", probe.get("successThreshold"), "must be 1"))
    return errs


def _validate_containers(containers: Any, field: str, regular: bool = True) -> list[Cause]:
    containers = _l(containers)
    if regular and not containers:
        return [required(field)]
    errs: list[Cause] = []
    names: set[str] = set()
    for i, c in enumerate(containers):
        c = _d(c)
        p = f"{field}[{i}]"
        name = _s(c.get("name"))
        if not name:
            errs.append(required(f"{p}.name"))
        else:
            errs += [invalid(f"{p}.name", name, m) for m in is_dns1123_label(name)]
        if not _s(c.get("image")):
            errs.append(required(f"{p}.image"))
        tmp = _s(c.get("terminationMessagePolicy"))
        if not tmp:
            errs.append(required(f"{p}.terminationMessagePolicy"))
        elif tmp not in ("File", "FallbackToLogsOnError"):
            errs.append(not_supported(f"{p}.terminationMessagePolicy", tmp, ("File", "FallbackToLogsOnError")))
        errs += _validate_container_ports(c.get("ports"), f"{p}.ports")
        errs += _validate_env(c.get("env"), f"{p}.env")
        pull = _s(c.get("imagePullPolicy"))
        if not pull:
            errs.append(required(f"{p}.imagePullPolicy"))
        elif pull not in ("Always", "IfNotPresent", "Never"):
            errs.append(not_supported(f"{p}.imagePullPolicy", pull, ("Always", "IfNotPresent", "Never")))
        if name in names:
            errs.append(duplicate(f"{p}.name", name))
        elif name:
            names.add(name)
        if regular:
            errs += _validate_probe(c.get("livenessProbe"), f"{p}.livenessProbe", True)
            errs += _validate_probe(c.get("readinessProbe"), f"{p}.readinessProbe", False)
            errs += _validate_probe(c.get("startupProbe"), f"{p}.startupProbe", True)
            if c.get("restartPolicy") is not None:
                errs.append(forbidden(f"{p}.restartPolicy", "may not be set for non-init containers"))
    return errs


def _validate_volumes(volumes: Any, field: str) -> list[Cause]:
    errs: list[Cause] = []
    names: set[str] = set()
    for i, vol in enumerate(_l(volumes)):
        vol = _d(vol)
        name = _s(vol.get("name"))
        p = f"{field}[{i}]"
        if not name:
            errs.append(required(f"{p}.name"))
        else:
            errs += [invalid(f"{p}.name", name, m) for m in is_dns1123_label(name)]
            if name in names:
                errs.append(duplicate(f"{p}.name", name))
            names.add(name)
    return errs


def validate_pod_spec(spec: Any, field: str) -> list[Cause]:
    spec = _d(spec)
    errs = _validate_volumes(spec.get("volumes"), f"{field}.volumes")
    errs += _validate_containers(spec.get("containers"), f"{field}.containers")
    errs += _validate_containers(spec.get("initContainers"), f"{field}.initContainers", regular=False)
    rp = _s(spec.get("restartPolicy"))
    if not rp:
        errs.append(required(f"{field}.restartPolicy"))
    elif rp not in ("Always", "OnFailure", "Never"):
        errs.append(not_supported(f"{field}.restartPolicy", rp, ("Always", "OnFailure", "Never")))
    dns = _s(spec.get("dnsPolicy"))
    dns_valid = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
    if not dns:
        errs.append(required(f"{field}.dnsPolicy"))
    elif dns not in dns_valid:
        errs.append(not_supported(f"{field}.dnsPolicy", dns, dns_valid))
    errs += validate_labels(spec.get("nodeSelector"), f"{field}.nodeSelector")
    sa = _s(spec.get("serviceAccountName"))
    if sa:
        errs += [invalid(f"{field}.serviceAccountName", sa, m) for m in is_dns1123_subdomain(sa)]
    node = _s(spec.get("nodeName"))
    if node:
        errs += [invalid(f"{field}.nodeName", node, m) for m in is_dns1123_subdomain(node)]
    ads = spec.get("activeDeadlineSeconds")
    if isinstance(ads, int) and not 1 <= ads <= 2**31 - 1:
        errs.append(invalid(f"{field}.activeDeadlineSeconds", ads, inclusive_range_error(1, 2**31 - 1)))
    for key in ("hostname", "subdomain"):
        v = _s(spec.get(key))
        if v:
            errs += [invalid(f"{field}.{key}", v, m) for m in is_dns1123_label(v)]
    for i, t in enumerate(_l(spec.get("tolerations"))):
        t = _d(t)
        op = _s(t.get("operator")) or "Equal"
        if op == "Exists" and _s(t.get("value")):
            errs.append(invalid(f"{field}.tolerations[{i}].operator", t.get("value"),
                                "value must be empty when `operator` is 'Exists'"))
        elif op not in ("Equal", "Exists"):
            errs.append(not_supported(f"{field}.tolerations[{i}].operator", op, ("Equal", "Exists")))
    return errs


def validate_pod_template(template: Any, field: str) -> list[Cause]:
    """ValidatePodTemplateSpec: template labels/annotations and the pod spec."""
    template = _d(template)
    meta = _d(template.get("metadata"))
    errs = validate_labels(meta.get("labels"), f"{field}.labels")
    errs += validate_annotations(meta.get("annotations"), f"{field}.annotations")
    errs += validate_pod_spec(template.get("spec"), f"{field}.spec")
    return errs


def _validate_template_for_controller(template: Any, selector: Any, field: str, *, check_restart: bool) -> list[Cause]:
    """ValidatePodTemplateSpecForReplicaSet / ForStatefulSet."""
    template = _d(template)
    labels = _d(template.get("metadata")).get("labels")
    errs: list[Cause] = []
    # A nil selector selects nothing, so it never matches (upstream: labels.Nothing() is not Empty()).
    selects_everything = isinstance(selector, dict) and not _d(selector.get("matchLabels")) \
        and not _l(selector.get("matchExpressions"))
    if not selects_everything and not selector_matches(selector, labels if isinstance(labels, dict) else {}):
        errs.append(invalid(f"{field}.metadata.labels", go_map(labels if isinstance(labels, dict) else None),
                            "`selector` does not match template `labels`"))
    errs += validate_pod_template(template, field)
    spec = _d(template.get("spec"))
    if check_restart:
        rp = _s(spec.get("restartPolicy"))
        if rp != "Always":
            errs.append(not_supported(f"{field}.spec.restartPolicy", rp, ("Always",)))
        if spec.get("activeDeadlineSeconds") is not None:
            errs.append(invalid(f"{field}.spec.activeDeadlineSeconds", spec.get("activeDeadlineSeconds"),
                                "activeDeadlineSeconds in ReplicaSet is not Supported"))
    return errs


_POD_UPDATABLE = ("`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
                  "`spec.tolerations` (only additions to existing tolerations),"
                  "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)")


def _validate_pod_update(new: dict, old: dict) -> list[Cause]:
    """ValidatePodUpdate: the spec is immutable except images, activeDeadlineSeconds, added tolerations."""
    errs: list[Cause] = []
    nspec, ospec = _d(new.get("spec")), _d(old.get("spec"))
    ads_new, ads_old = nspec.get("activeDeadlineSeconds"), ospec.get("activeDeadlineSeconds")
    if ads_new is None and ads_old is not None:
        errs.append(invalid("spec.activeDeadlineSeconds", GoValue("null"),
                            "must not update from a positive integer to nil value"))
    elif isinstance(ads_new, int) and isinstance(ads_old, int) and ads_new > ads_old:
        errs.append(invalid("spec.activeDeadlineSeconds", ads_new,
                            "must be less than or equal to previous value"))
    munged = json.loads(json.dumps(nspec))
    # Ephemeral containers change through their subresource only (validate_ephemeral_update).
    munged.pop("ephemeralContainers", None)
    if "ephemeralContainers" in ospec:
        munged["ephemeralContainers"] = ospec["ephemeralContainers"]
    for key in ("containers", "initContainers"):
        olds = _l(ospec.get(key))
        for i, c in enumerate(_l(munged.get(key))):
            if i < len(olds) and isinstance(c, dict) and isinstance(olds[i], dict) and "image" in olds[i]:
                c["image"] = olds[i]["image"]
    munged.pop("activeDeadlineSeconds", None)
    if ads_old is not None:
        munged["activeDeadlineSeconds"] = ads_old
    old_tol, new_tol = _l(ospec.get("tolerations")), _l(nspec.get("tolerations"))
    if all(t in new_tol for t in old_tol):
        munged.pop("tolerations", None)
        if "tolerations" in ospec:
            munged["tolerations"] = ospec["tolerations"]
    # nodeName is set through the binding subresource; the server may already have it.
    if not munged.get("nodeName") and ospec.get("nodeName"):
        munged["nodeName"] = ospec["nodeName"]
    if munged != ospec:
        errs.append(forbidden("spec", f"pod updates may not change fields other than {_POD_UPDATABLE}"))
    return errs


_EPHEMERAL_FORBIDDEN = ("ports", "livenessProbe", "readinessProbe", "startupProbe", "lifecycle")


def _validate_ephemeral(spec: dict, field: str) -> list[Cause]:
    """validateEphemeralContainers: container rules, names unique across the pod, no ports, probes or lifecycle,
    a target that exists."""
    ecs = _l(spec.get("ephemeralContainers"))
    errs = _validate_containers(ecs, field, regular=False)
    others = {_s(_d(c).get("name")) for key in ("containers", "initContainers") for c in _l(spec.get(key))}
    regular = {_s(_d(c).get("name")) for c in _l(spec.get("containers"))}
    for i, ec in enumerate(ecs):
        ec, p = _d(ec), f"{field}[{i}]"
        if _s(ec.get("name")) in others:
            errs.append(duplicate(f"{p}.name", _s(ec.get("name"))))
        for key in _EPHEMERAL_FORBIDDEN:
            if ec.get(key):
                errs.append(forbidden(f"{p}.{key}", "cannot be set for an Ephemeral Container"))
        target = _s(ec.get("targetContainerName"))
        if target and target not in regular:
            errs.append({"reason": "FieldValueNotFound", "field": f"{p}.targetContainerName",
                         "message": f'Not found: "{target}"'})
    return errs


def _validate_ephemeral_update(new: dict, old: dict) -> list[Cause]:
    """ValidatePodEphemeralContainersUpdate: ephemeral containers are added, never changed or removed."""
    errs: list[Cause] = []
    news = {_s(_d(c).get("name")): c for c in _l(_d(new.get("spec")).get("ephemeralContainers"))}
    for c in _l(_d(old.get("spec")).get("ephemeralContainers")):
        name = _s(_d(c).get("name"))
        if name not in news:
            errs.append(forbidden("spec.ephemeralContainers", f'existing ephemeral containers "{name}" may not be '
                                                               "removed"))
        elif news[name] != c:
            errs.append(forbidden("spec.ephemeralContainers", f'existing ephemeral containers "{name}" may not be '
                                                               "changed"))
    return errs


def validate_pod(obj: dict, old: dict | None) -> list[Cause]:
    errs = validate_object_meta(obj.get("metadata"), True, name_is_dns_subdomain)
    errs += validate_pod_spec(obj.get("spec"), "spec")
    errs += _validate_ephemeral(_d(obj.get("spec")), "spec.ephemeralContainers")
    if old is not None:
        errs = validate_object_meta_update(obj.get("metadata"), old.get("metadata")) + errs
        errs += _validate_pod_update(obj, old)
        errs += _validate_ephemeral_update(obj, old)
    return errs


# ---------------------------------------------------------------------------
# Service
# ---------------------------------------------------------------------------

SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
MAX_CLIENT_IP_AFFINITY_SECONDS = 86400


def _is_headless(spec: dict) -> bool:
    return _s(spec.get("clusterIP")) == "None"


def service_port_repr(port: dict) -> GoValue:
    """`%#v` of the core.ServicePort key the duplicate-port check builds (only Protocol and Port set)."""
    return GoValue(f'core.ServicePort{{Name:"", Protocol:{_go_quote(_s(port.get("protocol")))}, '
                   f'AppProtocol:(*string)(nil), Port:{_i(port.get("port"))}, '
                   'TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}')


def _validate_service_port(sp: dict, require_name: bool, names: set[str], p: str) -> list[Cause]:
    errs: list[Cause] = []
    name = _s(sp.get("name"))
    if require_name and not name:
        errs.append(required(f"{p}.name"))
    elif name:
        errs += [invalid(f"{p}.name", name, m) for m in is_dns1123_label(name)]
        if name in names:
            errs.append(duplicate(f"{p}.name", name))
        else:
            names.add(name)
    port = sp.get("port", 0)
    errs += [invalid(f"{p}.port", port, m) for m in is_valid_port_num(port)]
    proto = _s(sp.get("protocol"))
    if not proto:
        errs.append(required(f"{p}.protocol"))
    elif proto not in PROTOCOLS:
        errs.append(not_supported(f"{p}.protocol", proto, PROTOCOLS))
    errs += validate_port_num_or_name(sp.get("targetPort", 0), f"{p}.targetPort")
    app = sp.get("appProtocol")
    if isinstance(app, str):
        errs += [invalid(f"{p}.appProtocol", app, m) for m in is_qualified_name(app)]
    return errs


def _validate_cluster_ips(spec: dict) -> list[Cause]:
    """ValidateServiceClusterIPsRelatedFields."""
    if _s(spec.get("type")) == "ExternalName":
        return []
    errs: list[Cause] = []
    cip = _s(spec.get("clusterIP"))
    cips = [_s(x) for x in _l(spec.get("clusterIPs"))]
    fams = [_s(x) for x in _l(spec.get("ipFamilies"))]
    if cip:
        if not cips:
            errs.append(required("spec.clusterIPs"))
        elif cips[0] != cip:
            errs.append(invalid("spec.clusterIPs", go_string_slice(cips), "first value must match `clusterIP`"))
    elif cips:
        errs.append(invalid("spec.clusterIPs", go_string_slice(cips),
                            "must be empty when `clusterIP` is not specified"))
    seen: set[str] = set()
    for i, fam in enumerate(fams):
        if fam not in ("IPv4", "IPv6"):
            errs.append(not_supported(f"spec.ipFamilies[{i}]", fam, ("IPv4", "IPv6")))
        if fam in seen:
            errs.append(duplicate(f"spec.ipFamilies[{i}]", fam))
        seen.add(fam)
    policy = spec.get("ipFamilyPolicy")
    if policy is not None and policy not in ("PreferDualStack", "RequireDualStack", "SingleStack"):
        errs.append(not_supported("spec.ipFamilyPolicy", policy,
                                  ("PreferDualStack", "RequireDualStack", "SingleStack")))
    bad_ips = False
    for i, ip in enumerate(cips):
        if i == 0 and ip == "None":
            if len(cips) > 1:
                bad_ips = True
                errs.append(invalid("spec.clusterIPs", go_string_slice(cips),
                                    "'None' must be the first and only value"))
            continue
        ip_errs = is_valid_ip(f"spec.clusterIPs[{i}]", ip)
        bad_ips = bad_ips or bool(ip_errs)
        errs += ip_errs
    if len(cips) > 2:
        errs.append(invalid("spec.clusterIPs", go_string_slice(cips), "may only hold up to 2 values"))
    if bad_ips:
        return errs
    if len(cips) > 1:
        versions = {ip_.version for ip_ in (_parse_ip(x) for x in cips) if ip_ is not None}
        if len(versions) != 2:
            errs.append(invalid("spec.clusterIPs", go_string_slice(cips),
                                "may specify no more than one IP for each IP family"))
    if not _is_headless(spec) and cips and fams:
        for i, ip in enumerate(cips[:len(fams)]):
            parsed = _parse_ip(ip)
            if fams[i] == "IPv4" and parsed is not None and parsed.version == 6:
                errs.append(invalid(f"spec.clusterIPs[{i}]", ip,
                                    f"expected an IPv4 value as indicated by `ipFamilies[{i}]`"))
            if fams[i] == "IPv6" and (parsed is None or parsed.version != 6):
                errs.append(invalid(f"spec.clusterIPs[{i}]", ip,
                                    f"expected an IPv6 value as indicated by `ipFamilies[{i}]`"))
    return errs


def _externally_accessible(spec: dict) -> bool:
    t = _s(spec.get("type"))
    return t in ("LoadBalancer", "NodePort") or (t == "ClusterIP" and bool(_l(spec.get("externalIPs"))))


def validate_service_spec(obj: dict) -> list[Cause]:
    """ValidateService without the metadata part."""
    spec = _d(obj.get("spec"))
    errs: list[Cause] = []
    stype = _s(spec.get("type"))
    ports = [_d(p) for p in _l(spec.get("ports"))]
    headless = _is_headless(spec)
    cips = [_s(x) for x in _l(spec.get("clusterIPs"))]
    if not ports and not headless and stype != "ExternalName":
        errs.append(required("spec.ports"))
    if stype in ("LoadBalancer", "NodePort"):
        if headless:
            errs.append(invalid("spec.clusterIPs[0]", cips[0] if cips else "None",
                                f"may not be set to 'None' for {stype} services"))
        if stype == "LoadBalancer":
            for i, p in enumerate(ports):
                if p.get("port") == 10250:
                    errs.append(invalid(f"spec.ports[{i}]", 10250,
                                        "may not expose port 10250 externally since it is used by kubelet"))
    elif stype == "ExternalName":
        if cips:
            errs.append(forbidden("spec.clusterIPs", "may not be set for ExternalName services"))
        if _l(spec.get("ipFamilies")):
            errs.append(forbidden("spec.ipFamilies", "may not be set for ExternalName services"))
        if spec.get("ipFamilyPolicy") is not None:
            errs.append(forbidden("spec.ipFamilyPolicy", "may not be set for ExternalName services"))
        cname = _s(spec.get("externalName"))
        cname = cname[:-1] if cname.endswith(".") else cname
        if cname:
            errs += [invalid("spec.externalName", cname, m) for m in is_dns1123_subdomain(cname)]
        else:
            errs.append(required("spec.externalName"))
    names: set[str] = set()
    for i, p in enumerate(ports):
        errs += _validate_service_port(p, len(ports) > 1, names, f"spec.ports[{i}]")
    if isinstance(spec.get("selector"), dict):
        errs += validate_labels(spec.get("selector"), "spec.selector")
    affinity = _s(spec.get("sessionAffinity"))
    if not affinity:
        errs.append(required("spec.sessionAffinity"))
    elif affinity not in ("ClientIP", "None"):
        errs.append(not_supported("spec.sessionAffinity", affinity, ("ClientIP", "None")))
    sac = spec.get("sessionAffinityConfig")
    if affinity == "ClientIP":
        errs += _validate_client_ip_affinity(sac)
    elif affinity == "None" and sac is not None:
        errs.append(forbidden("spec.sessionAffinityConfig", "must not be set when session affinity is None"))
    errs += _validate_cluster_ips(spec)
    for i, ip in enumerate(_l(spec.get("externalIPs"))):
        p = f"spec.externalIPs[{i}]"
        ip_errs = is_valid_ip(p, ip)
        errs += ip_errs or validate_non_special_ip(ip, p)
    if not stype:
        errs.append(required("spec.type"))
    elif stype not in SERVICE_TYPES:
        errs.append(not_supported("spec.type", stype, SERVICE_TYPES))
    if stype == "ClusterIP":
        for i, p in enumerate(ports):
            if p.get("nodePort"):
                errs.append(forbidden(f"spec.ports[{i}].nodePort", "may not be used when `type` is 'ClusterIP'"))
    node_ports: set[tuple[str, int]] = set()
    for i, p in enumerate(ports):
        np_ = _i(p.get("nodePort"))
        if not np_:
            continue
        key = (_s(p.get("protocol")), np_)
        if key in node_ports:
            errs.append(duplicate(f"spec.ports[{i}].nodePort", np_))
        node_ports.add(key)
    seen_ports: set[tuple[str, Any]] = set()
    for i, p in enumerate(ports):
        key2 = (_s(p.get("protocol")), p.get("port"))
        if key2 in seen_ports:
            errs.append(duplicate(f"spec.ports[{i}]", service_port_repr(p)))
        seen_ports.add(key2)
    if stype != "LoadBalancer" and _l(spec.get("loadBalancerSourceRanges")):
        errs.append(forbidden("spec.loadBalancerSourceRanges", "may only be used when `type` is 'LoadBalancer'"))
    etp = _s(spec.get("externalTrafficPolicy"))
    if not _externally_accessible(spec):
        if etp:
            errs.append(invalid("spec.externalTrafficPolicy", etp,
                                "may only be set for externally-accessible services"))
    elif not etp:
        errs.append(required("spec.externalTrafficPolicy"))
    elif etp not in ("Cluster", "Local"):
        errs.append(not_supported("spec.externalTrafficPolicy", etp, ("Cluster", "Local")))
    itp = spec.get("internalTrafficPolicy")
    if itp is None:
        if stype in ("NodePort", "LoadBalancer", "ClusterIP"):
            errs.append(required("spec.internalTrafficPolicy"))
    elif itp not in ("Cluster", "Local"):
        errs.append(not_supported("spec.internalTrafficPolicy", itp, ("Cluster", "Local")))
    return errs


def _validate_client_ip_affinity(config: Any) -> list[Cause]:
    base = "spec.sessionAffinityConfig"
    detail = "when session affinity type is ClientIP"
    if not isinstance(config, dict):
        return [required(base, detail)]
    client_ip = config.get("clientIP")
    if not isinstance(client_ip, dict):
        return [required(f"{base}.clientIP", detail)]
    timeout = client_ip.get("timeoutSeconds")
    if timeout is None:
        return [required(f"{base}.clientIP.timeoutSeconds", detail)]
    if not isinstance(timeout, int) or timeout <= 0 or timeout > MAX_CLIENT_IP_AFFINITY_SECONDS:
        return [invalid(f"{base}.clientIP.timeoutSeconds", timeout,
                        f"must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}")]
    return []


def _effective_cluster_ips(new_spec: dict, old_spec: dict) -> list[str]:
    """The clusterIPs an update ends with once the server patched in allocated values."""
    cips = [_s(x) for x in _l(new_spec.get("clusterIPs"))]
    if not cips and not _s(new_spec.get("clusterIP")) and _s(new_spec.get("type")) != "ExternalName":
        return [_s(x) for x in _l(old_spec.get("clusterIPs"))]
    return cips


def _validate_service_update(new: dict, old: dict) -> list[Cause]:
    """validateUpgradeDowngradeClusterIPs (ClusterIPs may not change once set)."""
    nspec, ospec = _d(new.get("spec")), _d(old.get("spec"))
    if "ExternalName" in (_s(nspec.get("type")), _s(ospec.get("type"))):
        return []
    if _is_headless(nspec) and _is_headless(ospec):
        return []
    old_ips = [_s(x) for x in _l(ospec.get("clusterIPs"))]
    new_ips = _effective_cluster_ips(nspec, ospec)
    shown = go_string_slice(new_ips if new_ips else None)
    errs: list[Cause] = []
    if len(old_ips) == len(new_ips):
        for i, ip in enumerate(old_ips):
            if ip != new_ips[i]:
                errs.append(invalid(f"spec.clusterIPs[{i}]", shown, "may not change once set"))
    elif len(old_ips) > len(new_ips):
        if not new_ips:
            errs.append(invalid("spec.clusterIPs[0]", shown, "primary clusterIP can not be unset"))
        elif new_ips[0] != old_ips[0]:
            errs.append(invalid("spec.clusterIPs[0]", shown, "may not change once set"))
    elif old_ips and new_ips[0] != old_ips[0]:
        errs.append(invalid("spec.clusterIPs[0]", shown, "may not change once set"))
    return errs


def validate_service(obj: dict, old: dict | None) -> list[Cause]:
    errs: list[Cause] = []
    if old is not None:
        errs += validate_object_meta_update(obj.get("metadata"), old.get("metadata"))
        errs += _validate_service_update(obj, old)
    errs += validate_object_meta(obj.get("metadata"), True, name_is_dns1035_label)
    errs += validate_service_spec(obj)
    return errs


# ---------------------------------------------------------------------------
# Endpoints, EndpointSlice
# ---------------------------------------------------------------------------


def _validate_endpoint_address(addr: Any, p: str) -> list[Cause]:
    addr = _d(addr)
    ip = addr.get("ip", "")
    errs = is_valid_ip(f"{p}.ip", ip)
    hostname = _s(addr.get("hostname"))
    if hostname:
        errs += [invalid(f"{p}.hostname", hostname, m) for m in is_dns1123_label(hostname)]
    node = addr.get("nodeName")
    if isinstance(node, str):
        errs += [invalid(f"{p}.nodeName", node, m) for m in is_dns1123_subdomain(node)]
    errs += validate_non_special_ip(_s(ip), f"{p}.ip")
    return errs


def validate_endpoints(obj: dict, old: dict | None) -> list[Cause]:
    errs: list[Cause] = []
    if old is not None:
        errs += validate_object_meta_update(obj.get("metadata"), old.get("metadata"))
    errs += validate_object_meta(obj.get("metadata"), True, name_is_dns_subdomain)
    for i, ss in enumerate(_l(obj.get("subsets"))):
        ss = _d(ss)
        p = f"subsets[{i}]"
        if not _l(ss.get("addresses")) and not _l(ss.get("notReadyAddresses")):
            errs.append(required(p, "must specify `addresses` or `notReadyAddresses`"))
        for j, a in enumerate(_l(ss.get("addresses"))):
            errs += _validate_endpoint_address(a, f"{p}.addresses[{j}]")
        for j, a in enumerate(_l(ss.get("notReadyAddresses"))):
            errs += _validate_endpoint_address(a, f"{p}.notReadyAddresses[{j}]")
        ports = _l(ss.get("ports"))
        for j, port in enumerate(ports):
            port = _d(port)
            pp = f"{p}.ports[{j}]"
            name = _s(port.get("name"))
            if len(ports) > 1 and not name:
                errs.append(required(f"{pp}.name"))
            elif name:
                errs += [invalid(f"{pp}.name", name, m) for m in is_dns1123_label(name)]
            errs += [invalid(f"{pp}.port", port.get("port", 0), m) for m in is_valid_port_num(port.get("port", 0))]
            proto = _s(port.get("protocol"))
            if not proto:
                errs.append(required(f"{pp}.protocol"))
            elif proto not in PROTOCOLS:
                errs.append(not_supported(f"{pp}.protocol", proto, PROTOCOLS))
    return errs


ADDRESS_TYPES = ("FQDN", "IPv4", "IPv6")


def validate_endpoint_slice(obj: dict, old: dict | None) -> list[Cause]:
    errs: list[Cause] = []
    if old is not None:
        errs += validate_object_meta_update(obj.get("metadata"), old.get("metadata"))
    errs += validate_object_meta(obj.get("metadata"), True, name_is_dns_subdomain)
    addr_type = _s(obj.get("addressType"))
    if not addr_type:
        errs.append(required("addressType"))
    elif addr_type not in ADDRESS_TYPES:
        errs.append(not_supported("addressType", addr_type, ADDRESS_TYPES))
    endpoints = _l(obj.get("endpoints"))
    if len(endpoints) > 1000:
        errs.append(too_many("endpoints", len(endpoints), 1000))
        endpoints = []
    for i, ep in enumerate(endpoints):
        ep = _d(ep)
        p = f"endpoints[{i}]"
        addrs = _l(ep.get("addresses"))
        if not addrs:
            errs.append(required(f"{p}.addresses", "must contain at least 1 address"))
        elif len(addrs) > 100:
            errs.append(too_many(f"{p}.addresses", len(addrs), 100))
        for j, a in enumerate(addrs):
            ap = f"{p}.addresses[{j}]"
            parsed = _parse_ip(a)
            if addr_type == "IPv4":
                if parsed is None or parsed.version != 4:
                    errs.append(invalid(ap, a, "must be a valid IPv4 address"))
                else:
                    errs += validate_non_special_ip(a, ap)
            elif addr_type == "IPv6":
                if parsed is None or parsed.version != 6:
                    errs.append(invalid(ap, a, "must be a valid IPv6 address"))
                else:
                    errs += validate_non_special_ip(a, ap)
            elif addr_type == "FQDN":
                errs += [invalid(ap, a, m) for m in is_dns1123_subdomain(_s(a))]
        node = ep.get("nodeName")
        if isinstance(node, str):
            errs += [invalid(f"{p}.nodeName", node, m) for m in is_dns1123_subdomain(node)]
        hostname = ep.get("hostname")
        if isinstance(hostname, str):
            errs += [invalid(f"{p}.hostname", hostname, m) for m in is_dns1123_label(hostname)]
    names: set[str] = set()
    for i, port in enumerate(_l(obj.get("ports"))):
        port = _d(port)
        p = f"ports[{i}]"
        name = _s(port.get("name"))
        if name:
            errs += [invalid(f"{p}.name", name, m) for m in is_dns1123_label(name)]
        if name in names:
            errs.append(duplicate(f"{p}.name", name))
        names.add(name)
        proto = port.get("protocol")
        if proto is None:
            errs.append(required(f"{p}.protocol"))
        elif proto not in PROTOCOLS:
            errs.append(not_supported(f"{p}.protocol", proto, PROTOCOLS))
    if old is not None and _s(old.get("addressType")) != addr_type:
        errs.append(invalid("addressType", addr_type, FIELD_IMMUTABLE))
    return errs


# ---------------------------------------------------------------------------
# apps: Deployment, ReplicaSet, StatefulSet
# ---------------------------------------------------------------------------


def _nonnegative(value: Any, field: str) -> list[Cause]:
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        return [invalid(field, value, IS_NEGATIVE)]
    return []


def _validate_selector_required(spec: dict, what: str) -> list[Cause]:
    sel = spec.get("selector")
    if not isinstance(sel, dict):
        return [required("spec.selector")]
    errs = validate_label_selector(sel, "spec.selector")
    if not _d(sel.get("matchLabels")) and not _l(sel.get("matchExpressions")):
        errs.append(invalid("spec.selector", label_selector_repr(sel), f"empty selector is invalid for {what}"))
    return errs


def _int_or_percent_repr(v: Any) -> GoValue:
    if isinstance(v, str):
        return GoValue(f'intstr.IntOrString{{Type:1, IntVal:0, StrVal:{_go_quote(v)}}}')
    return GoValue(f'intstr.IntOrString{{Type:0, IntVal:{_i(v)}, StrVal:""}}')


def _validate_positive_int_or_percent(v: Any, field: str) -> list[Cause]:
    if isinstance(v, str):
        if not _PERCENT_RE.match(v):
            return [invalid(field, _int_or_percent_repr(v), "must be an integer or percentage (e.g '5%')")]
        return []
    return _nonnegative(v, field)


def _int_or_percent_value(v: Any) -> int:
    if isinstance(v, str):
        return int(v[:-1]) if _PERCENT_RE.match(v) else 0
    return _i(v)


def _validate_deployment_strategy(strategy: Any) -> list[Cause]:
    strategy = _d(strategy)
    stype = _s(strategy.get("type"))
    ru = strategy.get("rollingUpdate")
    if stype == "Recreate":
        if ru is not None:
            return [forbidden("spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'")]
        return []
    if stype == "RollingUpdate":
        if not isinstance(ru, dict):
            return [required("spec.strategy.rollingUpdate", "this should be defaulted and never be nil")]
        p = "spec.strategy.rollingUpdate"
        errs = _validate_positive_int_or_percent(ru.get("maxUnavailable"), f"{p}.maxUnavailable")
        errs += _validate_positive_int_or_percent(ru.get("maxSurge"), f"{p}.maxSurge")
        if _int_or_percent_value(ru.get("maxUnavailable")) == 0 and _int_or_percent_value(ru.get("maxSurge")) == 0:
            errs.append(invalid(f"{p}.maxUnavailable", _int_or_percent_repr(ru.get("maxUnavailable")),
                                "may not be 0 when `maxSurge` is 0"))
        mu = ru.get("maxUnavailable")
        if isinstance(mu, str) and _PERCENT_RE.match(mu) and int(mu[:-1]) > 100:
            errs.append(invalid(f"{p}.maxUnavailable", _int_or_percent_repr(mu), "must not be greater than 100%"))
        return errs
    return [not_supported("spec.strategy", GoValue(f"apps.DeploymentStrategy{{Type:{_go_quote(stype)}}}"),
                          ("Recreate", "RollingUpdate"))]


def validate_deployment(obj: dict, old: dict | None) -> list[Cause]:
    spec = _d(obj.get("spec"))
    errs: list[Cause] = []
    if old is not None:
        errs += validate_object_meta_update(obj.get("metadata"), old.get("metadata"))
    errs += validate_object_meta(obj.get("metadata"), True, name_is_dns_subdomain)
    errs += _nonnegative(spec.get("replicas"), "spec.replicas")
    errs += _validate_selector_required(spec, "deployment")
    errs += _validate_template_for_controller(spec.get("template"), spec.get("selector"), "spec.template",
                                              check_restart=True)
    errs += _validate_deployment_strategy(spec.get("strategy"))
    errs += _nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    errs += _nonnegative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit")
    pds = spec.get("progressDeadlineSeconds")
    if isinstance(pds, int):
        errs += _nonnegative(pds, "spec.progressDeadlineSeconds")
        if pds <= _i(spec.get("minReadySeconds")):
            errs.append(invalid("spec.progressDeadlineSeconds", pds, "must be greater than minReadySeconds"))
    if old is not None:
        errs += _immutable_selector(spec, _d(old.get("spec")))
    return errs


def _immutable_selector(spec: dict, old_spec: dict) -> list[Cause]:
    if spec.get("selector") != old_spec.get("selector"):
        sel = spec.get("selector")
        return [invalid("spec.selector", label_selector_repr(sel if isinstance(sel, dict) else None), FIELD_IMMUTABLE)]
    return []


def validate_replica_set(obj: dict, old: dict | None) -> list[Cause]:
    spec = _d(obj.get("spec"))
    errs: list[Cause] = []
    if old is not None:
        errs += validate_object_meta_update(obj.get("metadata"), old.get("metadata"))
    errs += validate_object_meta(obj.get("metadata"), True, name_is_dns_subdomain)
    errs += _nonnegative(spec.get("replicas"), "spec.replicas")
    errs += _nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    errs += _validate_selector_required(spec, "deployment")
    errs += _validate_template_for_controller(spec.get("template"), spec.get("selector"), "spec.template",
                                              check_restart=True)
    if old is not None:
        errs += _immutable_selector(spec, _d(old.get("spec")))
    return errs


_STS_MUTABLE = ("replicas", "ordinals", "template", "updateStrategy", "revisionHistoryLimit",
                "persistentVolumeClaimRetentionPolicy", "minReadySeconds")


def validate_stateful_set(obj: dict, old: dict | None) -> list[Cause]:
    spec = _d(obj.get("spec"))
    errs: list[Cause] = []
    if old is not None:
        errs += validate_object_meta_update(obj.get("metadata"), old.get("metadata"))
    errs += validate_object_meta(obj.get("metadata"), True, name_is_dns_subdomain)
    pmp = _s(spec.get("podManagementPolicy"))
    if not pmp:
        errs.append(required("spec.podManagementPolicy"))
    elif pmp not in ("OrderedReady", "Parallel"):
        errs.append(invalid("spec.podManagementPolicy", pmp, "must be 'OrderedReady' or 'Parallel'"))
    us = _d(spec.get("updateStrategy"))
    ustype = _s(us.get("type"))
    if not ustype:
        errs.append(required("spec.updateStrategy"))
    elif ustype == "OnDelete":
        if us.get("rollingUpdate") is not None:
            errs.append(invalid("spec.updateStrategy.rollingUpdate", GoValue("apps.RollingUpdateStatefulSetStrategy{}"),
                                "only allowed for updateStrategy 'RollingUpdate'"))
    elif ustype == "RollingUpdate":
        ru = us.get("rollingUpdate")
        if isinstance(ru, dict):
            errs += _nonnegative(ru.get("partition"), "spec.updateStrategy.rollingUpdate.partition")
    else:
        shown = GoValue(f"apps.StatefulSetUpdateStrategy{{Type:{_go_quote(ustype)}}}")
        errs.append(invalid("spec.updateStrategy", shown, "must be 'RollingUpdate' or 'OnDelete'"))
    policy = spec.get("persistentVolumeClaimRetentionPolicy")
    if isinstance(policy, dict):
        for key in ("whenDeleted", "whenScaled"):
            v = _s(policy.get(key))
            if v not in ("Retain", "Delete"):
                errs.append(not_supported(f"spec.persistentVolumeClaimRetentionPolicy.{key}", v, ("Retain", "Delete")))
    errs += _nonnegative(spec.get("replicas"), "spec.replicas")
    errs += _nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    errs += _validate_selector_required(spec, "statefulset")
    errs += _validate_template_for_controller(spec.get("template"), spec.get("selector"), "spec.template",
                                              check_restart=False)
    tspec = _d(_d(spec.get("template")).get("spec"))
    if _s(tspec.get("restartPolicy")) != "Always":
        errs.append(not_supported("spec.template.spec.restartPolicy", _s(tspec.get("restartPolicy")), ("Always",)))
    if tspec.get("activeDeadlineSeconds") is not None:
        errs.append(forbidden("spec.template.spec.activeDeadlineSeconds",
                              "activeDeadlineSeconds in StatefulSet is not Supported"))
    if old is not None:
        ospec = _d(old.get("spec"))
        rest_new = {k: v for k, v in spec.items() if k not in _STS_MUTABLE}
        rest_old = {k: v for k, v in ospec.items() if k not in _STS_MUTABLE}
        if rest_new != rest_old:
            errs.append(forbidden("spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', "
                                          "'template', 'updateStrategy', 'revisionHistoryLimit', "
                                          "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"))
    return errs


# ---------------------------------------------------------------------------
# Namespace, Node, Event
# ---------------------------------------------------------------------------


def validate_namespace(obj: dict, old: dict | None) -> list[Cause]:
    errs: list[Cause] = []
    if old is not None:
        errs += validate_object_meta_update(obj.get("metadata"), old.get("metadata"))
    errs += validate_object_meta(obj.get("metadata"), False, name_is_dns_label)
    for i, fin in enumerate(_l(_d(obj.get("spec")).get("finalizers"))):
        fin = _s(fin)
        errs += [invalid(f"spec.finalizers[{i}]", fin, m) for m in is_qualified_name(fin)]
        if "/" not in fin and fin not in _STANDARD_FINALIZERS:
            errs.append(invalid(f"spec.finalizers[{i}]", fin,
                                "name is neither a standard finalizer name nor is it fully qualified"))
    return errs


def validate_node(obj: dict, old: dict | None) -> list[Cause]:
    errs: list[Cause] = []
    if old is not None:
        errs += validate_object_meta_update(obj.get("metadata"), old.get("metadata"))
    errs += validate_object_meta(obj.get("metadata"), False, name_is_dns_subdomain)
    return errs


def validate_event(obj: dict, old: dict | None) -> list[Cause]:
    errs = validate_object_meta(obj.get("metadata"), True, name_is_dns_subdomain)
    ns = _s(_d(obj.get("metadata")).get("namespace"))
    involved_ns = _s(_d(obj.get("involvedObject")).get("namespace"))
    if not obj.get("eventTime"):
        if not involved_ns:
            if ns not in ("", "default"):
                errs.append(invalid("involvedObject.namespace", involved_ns, "does not match event.namespace"))
        elif ns != involved_ns:
            errs.append(invalid("involvedObject.namespace", involved_ns, "does not match event.namespace"))
    errs += [invalid("namespace", ns, m) for m in is_dns1123_subdomain(ns)]
    return errs


# ---------------------------------------------------------------------------
# ConfigMap, Secret, ServiceAccount
# ---------------------------------------------------------------------------

_CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
_CONFIG_KEY_RE = re.compile(f"^{_CONFIG_KEY_FMT}$")
_CONFIG_KEY_MSG = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
MAX_SECRET_SIZE = 1024 * 1024  # core.MaxSecretSize, also the limit of a ConfigMap's data
IMMUTABLE_WHEN_SET = "field is immutable when `immutable` is set"


def is_config_map_key(value: str) -> list[str]:
    """validation.IsConfigMapKey: what a key of data/binaryData (and a projected file name) may be."""
    errs = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _CONFIG_KEY_RE.match(value):
        errs.append(regex_error(_CONFIG_KEY_MSG, _CONFIG_KEY_FMT, "key.name", "KEY_NAME", "key-name"))
    if value == ".":
        errs.append("must not be '.'")
    elif value == "..":
        errs.append("must not be '..'")
    elif value.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def _decoded_size(value: Any) -> int:
    """The byte length of a base64 `[]byte` value as the API stores it (already checked by the registry)."""
    text = _s(value)
    return len(text) * 3 // 4 - text.count("=") if text else 0


def validate_config_map(obj: dict, old: dict | None) -> list[Cause]:
    errs: list[Cause] = []
    if old is not None:
        errs += validate_object_meta_update(obj.get("metadata"), old.get("metadata"))
        if old.get("immutable") is True:
            if obj.get("immutable") is not True:
                errs.append(forbidden("immutable", IMMUTABLE_WHEN_SET))
            for key in ("data", "binaryData"):
                if (obj.get(key) or {}) != (old.get(key) or {}):
                    errs.append(forbidden(key, IMMUTABLE_WHEN_SET))
    errs += validate_object_meta(obj.get("metadata"), True, name_is_dns_subdomain)
    data, binary = _d(obj.get("data")), _d(obj.get("binaryData"))
    total = 0
    for key in sorted(data):  # Go ranges over a map in no set order; sorted keeps the causes stable
        errs += [invalid(f"data[{key}]", key, m) for m in is_config_map_key(key)]
        if key in binary:
            errs.append(invalid(f"data[{key}]", key, "duplicate of key present in binaryData"))
        total += len(_s(data[key]).encode())
    for key in sorted(binary):
        errs += [invalid(f"binaryData[{key}]", key, m) for m in is_config_map_key(key)]
        total += _decoded_size(binary[key])
    if total > MAX_SECRET_SIZE:
        errs.append(too_long("", MAX_SECRET_SIZE))
    return errs


# Secret types and the data keys (or annotation) each requires (pkg/apis/core/types.go).
SECRET_TYPE_SA_TOKEN = "kubernetes.io/service-account-token"
_SECRET_REQUIRED_KEYS = {
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
}


_GO_JSON_TYPES = {str: "string", int: "number", float: "number", bool: "bool", list: "array"}


def _json_error(data: Any) -> str | None:
    """Why a base64 value is not a JSON object, worded as Go's json.Unmarshal into a map words it; None if it is."""
    import base64

    raw = base64.b64decode(_s(data)).decode(errors="replace")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(raw.rstrip()):
            return "unexpected end of JSON input"
        return f"invalid character {raw[exc.pos]!r} looking for beginning of value"
    if not isinstance(value, dict) and value is not None:
        return (f"json: cannot unmarshal {_GO_JSON_TYPES.get(type(value), 'value')} into Go value of type "
                "map[string]interface {}")
    return None


def validate_secret(obj: dict, old: dict | None) -> list[Cause]:
    errs: list[Cause] = []
    stype = _s(obj.get("type"))
    if old is not None:
        errs += validate_object_meta_update(obj.get("metadata"), old.get("metadata"))
        if stype != _s(old.get("type")):
            errs.append(invalid("type", stype, FIELD_IMMUTABLE))
        if old.get("immutable") is True:
            if obj.get("immutable") is not True:
                errs.append(forbidden("immutable", IMMUTABLE_WHEN_SET))
            if (obj.get("data") or {}) != (old.get("data") or {}):
                errs.append(forbidden("data", IMMUTABLE_WHEN_SET))
    errs += validate_object_meta(obj.get("metadata"), True, name_is_dns_subdomain)
    data = _d(obj.get("data"))
    total = 0
    for key in sorted(data):
        errs += [invalid(f"data[{key}]", key, m) for m in is_config_map_key(key)]
        total += _decoded_size(data[key])
    if total > MAX_SECRET_SIZE:
        errs.append(too_long("data", MAX_SECRET_SIZE))
    if stype == SECRET_TYPE_SA_TOKEN:
        if not _s(_d(_d(obj.get("metadata")).get("annotations")).get("kubernetes.io/service-account.name")):
            errs.append(required("metadata.annotations[kubernetes.io/service-account.name]"))
    elif stype == "kubernetes.io/basic-auth":
        if "username" not in data and "password" not in data:
            errs += [required("data[username]"), required("data[password]")]
    elif stype == "kubernetes.io/ssh-auth":
        if not _decoded_size(data.get("ssh-privatekey")):
            errs.append(required("data[ssh-privatekey]"))
    else:
        for key in _SECRET_REQUIRED_KEYS.get(stype, ()):
            if key not in data:
                errs.append(required(f"data[{key}]"))
            elif key.startswith(".docker") and (why := _json_error(data[key])):
                errs.append(invalid(f"data[{key}]", "<secret contents redacted>", why))
    return errs


def validate_service_account(obj: dict, old: dict | None) -> list[Cause]:
    errs: list[Cause] = []
    if old is not None:
        errs += validate_object_meta_update(obj.get("metadata"), old.get("metadata"))
    return errs + validate_object_meta(obj.get("metadata"), True, name_is_dns_subdomain)


_VALIDATORS: dict[tuple[str, str], Callable[[dict, dict | None], list[Cause]]] = {
    ("", "Namespace"): validate_namespace,
    ("", "Node"): validate_node,
    ("", "Pod"): validate_pod,
    ("", "Service"): validate_service,
    ("", "Endpoints"): validate_endpoints,
    ("", "Event"): validate_event,
    ("", "ConfigMap"): validate_config_map,
    ("", "Secret"): validate_secret,
    ("", "ServiceAccount"): validate_service_account,
    ("apps", "Deployment"): validate_deployment,
    ("apps", "ReplicaSet"): validate_replica_set,
    ("apps", "StatefulSet"): validate_stateful_set,
    ("discovery.k8s.io", "EndpointSlice"): validate_endpoint_slice,
}


# Validators of validation_batch.py, by kind.
_WORKLOAD_KINDS = {("apps", "DaemonSet"): "validate_daemon_set", ("batch", "Job"): "validate_job",
                   ("batch", "CronJob"): "validate_cron_job"}


def validate(kind: ResourceKind, obj: dict, old: dict | None = None) -> list[dict]:
    """The causes that make `obj` invalid (empty when valid); `old` is the stored object on update."""
    fn = _VALIDATORS.get((kind.group, kind.kind))
    if fn is None and (kind.group, kind.kind) in _WORKLOAD_KINDS:
        from labkit.apiserver import validation_batch  # it builds on this module

        fn = getattr(validation_batch, _WORKLOAD_KINDS[(kind.group, kind.kind)])
    if fn is None and kind.group == "rbac.authorization.k8s.io":
        from labkit.apiserver import rbac  # it builds on this module

        fn = {"ClusterRole": rbac.validate_cluster_role,
              "ClusterRoleBinding": rbac.validate_cluster_role_binding}.get(kind.kind)
    if fn is None:
        return validate_object_meta(obj.get("metadata"), kind.namespaced, name_is_dns_subdomain)
    return fn(obj, old)
