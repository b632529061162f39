"""What decoding a write into the Go types does to the few kinds whose JSON is not their stored form.

kube-apiserver decodes every body into the versioned Go struct and converts it to the internal type before it
stores anything. For most kinds that round trip is `normalize.py`'s business; two need more:

- `[]byte` fields (Secret `data`, ConfigMap `binaryData`) are base64 in JSON. A value Go's
  `base64.StdEncoding` rejects fails the whole decode with a 400 (`Secret in version "v1" cannot be handled as
  a Secret: illegal base64 data at input byte 4`); an accepted one is stored re-encoded (line breaks gone).
- A Secret's `stringData` is write-only: conversion to the internal type copies each entry into `data` (where
  it wins over a `data` entry of the same key) and the field is never stored (`pkg/apis/core/v1/conversion.go`).
"""

from __future__ import annotations

import base64
import binascii

from labkit import errors
from labkit.kinds import ResourceKind

_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_BYTES_FIELDS = {("v1", "Secret"): "data", ("v1", "ConfigMap"): "binaryData"}
_GO_JSON_TYPES = {int: "number", float: "number", bool: "bool", list: "array", dict: "object"}


def base64_error_offset(text: str) -> int | None:
    """Where Go's base64.StdEncoding.DecodeString gives up on `text` (its CorruptInputError), or None if it decodes.

    Go skips CR and LF anywhere, reads quanta of four symbols, and accepts "=" padding only at the third or
    fourth place of the last quantum; the offset counts the raw input, line breaks included.
    """
    src = text.encode("latin-1", errors="replace")
    n, si = len(src), 0
    while si < n:
        j = 0
        while j < 4:
            if si == n:
                if j == 0:
                    return None
                return si - j
            c = src[si]
            si += 1
            if c in _ALPHABET:
                j += 1
                continue
            if c in (0x0A, 0x0D):
                continue
            if c != ord("=") or j < 2:
                return si - 1
            if j == 2:  # "==" must follow
                while si < n and src[si] in (0x0A, 0x0D):
                    si += 1
                if si == n:
                    return n
                if src[si] != ord("="):
                    return si - 1
                si += 1
            while si < n and src[si] in (0x0A, 0x0D):
                si += 1
            return si if si < n else None
    return None


def _decode_error(kind: ResourceKind, detail: str) -> errors.BadRequest:
    return errors.BadRequest(f'{kind.kind} in version "{kind.version}" cannot be handled as a {kind.kind}: {detail}')


def to_stored(kind: ResourceKind, obj: dict) -> dict:
    """`obj` (a typed body, changed in place and returned) as conversion to the internal type leaves it."""
    field = _BYTES_FIELDS.get((kind.api_version, kind.kind))
    if field is None:
        return obj
    values = obj.get(field)
    if isinstance(values, dict):
        for key, value in values.items():
            if value is None:
                continue
            if not isinstance(value, str):
                got = _GO_JSON_TYPES.get(type(value), "value")
                raise _decode_error(kind, f"json: cannot unmarshal {got} into Go struct field {kind.kind}.{field} of "
                                          "type []uint8")
            offset = base64_error_offset(value)
            if offset is not None:
                raise _decode_error(kind, f"illegal base64 data at input byte {offset}")
            if "\n" in value or "\r" in value:
                values[key] = base64.b64encode(binascii.a2b_base64(value)).decode()
    if kind.kind == "Secret" and "stringData" in obj:
        string_data = obj.pop("stringData") or {}
        if string_data:
            data = obj.get("data") if isinstance(obj.get("data"), dict) else {}
            for key, value in string_data.items():
                data[key] = base64.b64encode(str(value).encode()).decode()
            obj["data"] = data
    return obj
