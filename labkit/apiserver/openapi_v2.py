"""`/openapi/v2` as kubectl 1.27 and 1.28 read it: a gnostic `openapi_v2.Document` in protobuf.

Those kubectl versions decide how to validate `apply`/`create -f` by looking up
the PATCH operation of the object's kind in the v2 document: if it carries a
`fieldValidation` query parameter, kubectl leaves validation to the server
(`fieldValidation=Strict`). Without a v2 document they stop with "the server
could not find the requested resource". Newer kubectl reads `/openapi/v3`.

So this document holds paths only: per kind, the item path with a PATCH
operation carrying `x-kubernetes-group-version-kind` and the `fieldValidation`
parameter. It has no definitions, so kubectl's apply falls back to its
compiled-in strategic-merge metadata, as it does against servers without v2.
Field numbers are those of gnostic's OpenAPIv2.proto (Document, Paths,
NamedPathItem, PathItem, Operation, ParametersItem, Parameter, NonBodyParameter,
QueryParameterSubSchema, NamedAny, Any, Responses, NamedResponseValue,
ResponseValue, Response). The protobuf wire format is simple enough to write
here in a few lines; pulling in generated code for one message tree is not worth it.
"""

from __future__ import annotations

from functools import cache

from labkit.kinds import ALL_KINDS, ResourceKind

# kubectl asks with `...spec.v2@v1.0+protobuf`; the answer's type must parse as a MIME type, which "@" breaks.
MEDIA_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes | str) -> bytes:
    """A length-delimited field (wire type 2): strings and embedded messages."""
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _bool(number: int, value: bool) -> bytes:
    return _varint(number << 3) + _varint(int(value)) if value else b""


def _named_any(name: str, yaml: str) -> bytes:
    return _field(1, name) + _field(2, _field(2, yaml))  # NamedAny{name, value: Any{yaml}}


def _query_parameter(name: str, description: str) -> bytes:
    sub = _field(2, "query") + _field(3, description) + _field(4, name) + _bool(5, True) + _field(6, "string")
    non_body = _field(3, sub)  # NonBodyParameter.query_parameter_sub_schema
    parameter = _field(2, non_body)  # Parameter.non_body_parameter
    return _field(1, parameter)  # ParametersItem.parameter


def _responses() -> bytes:
    response = _field(1, "OK")  # Response.description
    value = _field(1, response)  # ResponseValue.response
    return _field(1, _field(1, "200") + _field(2, value))  # Responses.response_code


def _gvk_yaml(kind: ResourceKind) -> str:
    return f'group: "{kind.group}"\nkind: {kind.kind}\nversion: {kind.version}\n'


_PATCH_PARAMETERS = (
    ("dryRun", "When present, indicates that modifications should not be persisted."),
    ("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes."),
    ("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request containing "
                        "unknown or duplicate fields."),
    ("force", 'Force is going to "force" Apply requests.'),
)


def _patch_operation(kind: ResourceKind) -> bytes:
    op = _field(1, kind.plural)  # tags
    op += _field(3, f"partially update the specified {kind.kind}")
    op += _field(5, f"patch{kind.kind}")
    for media in ("application/json-patch+json", "application/merge-patch+json",
                  "application/strategic-merge-patch+json", "application/apply-patch+yaml"):
        op += _field(7, media)  # consumes
    for name, description in _PATCH_PARAMETERS:
        op += _field(8, _query_parameter(name, description))  # Operation.parameters
    op += _field(9, _responses())
    op += _field(13, _named_any("x-kubernetes-action", "patch\n"))
    op += _field(13, _named_any("x-kubernetes-group-version-kind", _gvk_yaml(kind)))
    return op


def _item_path(kind: ResourceKind) -> str:
    base = f"/{kind.group_version}"
    if kind.namespaced:
        return f"{base}/namespaces/{{namespace}}/{kind.plural}/{{name}}"
    return f"{base}/{kind.plural}/{{name}}"


@cache
def document() -> bytes:
    """The encoded Document."""
    paths = b""
    for kind in ALL_KINDS:
        if "patch" not in kind.verbs:
            continue
        path_item = _field(8, _patch_operation(kind))  # PathItem.patch
        paths += _field(2, _field(1, _item_path(kind)) + _field(2, path_item))  # Paths.path: NamedPathItem
    info = _field(1, "Kubernetes") + _field(2, "v1.32.5-labkit")
    return _field(1, "2.0") + _field(2, info) + _field(8, paths)
