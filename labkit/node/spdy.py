"""The server side of a SPDY/3.1 session: what kubectl's port-forward speaks inside its WebSocket tunnel.

Since kubectl 1.31 (1.30 with KUBECTL_PORT_FORWARD_WEBSOCKETS=true), `kubectl port-forward` opens a WebSocket
with the subprotocol `SPDY/3.1+portforward.k8s.io`; the payloads of its binary messages form one byte stream
carrying a SPDY/3.1 session in which kubectl is the client (containers.md §4). This module parses and writes that
session's frames; labkit.node.portforward gives them their port-forward meaning.

Frames (SPDY protocol draft 3.1): a control frame is `1 | version(15) | type(16) | flags(8) | length(24) | data`,
a data frame `0 | stream id(31) | flags(8) | length(24) | data`. Header blocks (SYN_STREAM, SYN_REPLY, HEADERS)
are zlib streams, one per direction for the whole session, primed with the protocol's dictionary.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
RST_PROTOCOL_ERROR, RST_INVALID_STREAM, RST_REFUSED_STREAM, RST_CANCEL = 1, 2, 3, 5

# The header compression dictionary of SPDY/3: each of these names length-prefixed (4 bytes, big-endian), then
# the text that follows them, as the draft gives it (1,423 bytes).
_DICTIONARY_WORDS = (
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding",
    "accept-language", "accept-ranges", "age", "allow", "authorization", "cache-control", "connection",
    "content-base", "content-encoding", "content-language", "content-length", "content-location", "content-md5",
    "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host", "if-match",
    "if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
    "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer", "retry-after",
    "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
    "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie",
    "keep-alive", "origin",
)
_DICTIONARY_TEXT = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _DICTIONARY_WORDS) + _DICTIONARY_TEXT.encode()


@dataclass
class Frame:
    """One frame: a control frame (`type` > 0) or data (`type` 0) of `stream`."""

    type: int
    flags: int
    stream: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    data: bytes = b""
    value: int = 0  # PING id, RST_STREAM/GOAWAY status, WINDOW_UPDATE delta

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


class ProtocolError(Exception):
    pass


class Session:
    """Frames in (`feed`), frames out (the `*_frame` methods return bytes to send)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._deflate = zlib.compressobj(zdict=DICTIONARY)

    # ---- in ----
    def feed(self, data: bytes) -> list[Frame]:
        """The frames complete once `data` arrived (the rest waits for more)."""
        self._buffer += data
        frames = []
        while len(self._buffer) >= 8:
            flags_length = struct.unpack_from(">I", self._buffer, 4)[0]
            length = flags_length & 0xFFFFFF
            if len(self._buffer) < 8 + length:
                break
            head, body = self._buffer[:8], self._buffer[8:8 + length]
            self._buffer = self._buffer[8 + length:]
            frames.append(self._parse(head, body, flags_length >> 24))
        return frames

    def _parse(self, head: bytes, body: bytes, flags: int) -> Frame:
        first = struct.unpack_from(">I", head)[0]
        if not first & 0x80000000:
            return Frame(0, flags, first & 0x7FFFFFFF, data=body)
        version, ftype = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise ProtocolError(f"SPDY version {version} is not served (only 3)")
        if ftype == SYN_STREAM:
            stream = struct.unpack_from(">I", body)[0] & 0x7FFFFFFF
            return Frame(ftype, flags, stream, headers=self._headers(body[10:]))
        if ftype in (SYN_REPLY, HEADERS):
            stream = struct.unpack_from(">I", body)[0] & 0x7FFFFFFF
            return Frame(ftype, flags, stream, headers=self._headers(body[4:]))
        if ftype in (RST_STREAM, WINDOW_UPDATE):
            stream, value = struct.unpack_from(">II", body)
            return Frame(ftype, flags, stream & 0x7FFFFFFF, value=value & 0x7FFFFFFF)
        if ftype == PING:
            return Frame(ftype, flags, value=struct.unpack_from(">I", body)[0])
        if ftype == GOAWAY:
            return Frame(ftype, flags, struct.unpack_from(">I", body)[0] & 0x7FFFFFFF)
        return Frame(ftype, flags, data=body)  # SETTINGS and the rest: nothing to do

    def _headers(self, block: bytes) -> dict[str, str]:
        raw = self._inflate.decompress(block)
        (count,), at, headers = struct.unpack_from(">I", raw), 4, {}
        for _ in range(count):
            (n,) = struct.unpack_from(">I", raw, at)
            name = raw[at + 4:at + 4 + n].decode()
            at += 4 + n
            (n,) = struct.unpack_from(">I", raw, at)
            headers[name.lower()] = raw[at + 4:at + 4 + n].decode()
            at += 4 + n
        return headers

    # ---- out ----
    @staticmethod
    def _control(ftype: int, flags: int, body: bytes) -> bytes:
        return struct.pack(">HHI", 0x8000 | VERSION, ftype, (flags << 24) | len(body)) + body

    def _header_block(self, headers: dict[str, str]) -> bytes:
        raw = struct.pack(">I", len(headers))
        for name, value in headers.items():
            raw += struct.pack(">I", len(name)) + name.encode() + struct.pack(">I", len(value)) + value.encode()
        return self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def syn_reply(self, stream: int, headers: dict[str, str] | None = None, fin: bool = False) -> bytes:
        body = struct.pack(">I", stream) + self._header_block(headers or {})
        return self._control(SYN_REPLY, FLAG_FIN if fin else 0, body)

    def rst_stream(self, stream: int, status: int = RST_CANCEL) -> bytes:
        return self._control(RST_STREAM, 0, struct.pack(">II", stream, status))

    def ping(self, ping_id: int) -> bytes:
        return self._control(PING, 0, struct.pack(">I", ping_id))

    def window_update(self, stream: int, delta: int) -> bytes:
        return self._control(WINDOW_UPDATE, 0, struct.pack(">II", stream, delta))

    def goaway(self, last_stream: int = 0) -> bytes:
        return self._control(GOAWAY, 0, struct.pack(">II", last_stream, 0))

    @staticmethod
    def data(stream: int, payload: bytes, fin: bool = False) -> bytes:
        return struct.pack(">II", stream, ((FLAG_FIN if fin else 0) << 24) | len(payload)) + payload
