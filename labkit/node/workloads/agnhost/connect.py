"""agnhost connect (test/images/agnhost/connect/connect.go): try one TCP, UDP or SCTP connection.

`connect HOST:PORT [--timeout=DURATION] [--protocol=tcp|udp|sctp] [--udp-data=hostname]` exits 0 on success;
otherwise it exits 1 after one line on stderr whose prefix tests check for: `UNKNOWN: …` (bad arguments),
`TIMEOUT`, `DNS: …` (the name does not resolve), `REFUSED`, `OTHER: …` (e.g. no route to host). For UDP it
sends the payload and a newline and needs a reply. A timeout of 0 (the default) waits as long as the kernel.
"""

from __future__ import annotations

import errno
import socket
import sys

from labkit.node.workloads.agnhost.common import go_errno, go_lookup_error, is_timeout, parse_args, parse_go_duration


def _fail(line: str) -> int:
    print(line, file=sys.stderr, flush=True)
    return 1


def split_host_port(dest: str) -> tuple[str, str]:
    """net.SplitHostPort, with its error messages."""
    if dest.startswith("["):
        end = dest.find("]")
        if end < 0:
            raise ValueError(f"address {dest}: missing ']' in address")
        host, rest = dest[1:end], dest[end + 1:]
        if not rest.startswith(":"):
            raise ValueError(f"address {dest}: missing port in address")
        return host, rest[1:]
    if ":" not in dest:
        raise ValueError(f"address {dest}: missing port in address")
    host, _, port = dest.rpartition(":")
    if ":" in host:
        raise ValueError(f"address {dest}: too many colons in address")
    return host, port


def _resolve(host: str, port: str, kind: int) -> tuple[int, tuple]:
    """(family, sockaddr) of host:port, as net.Resolve{TCP,UDP}Addr; raises ValueError with Go's DNS message."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=kind)
    except socket.gaierror as exc:
        if not port.isdigit() and exc.errno == socket.EAI_SERVICE:
            raise ValueError(f"lookup {'tcp' if kind == socket.SOCK_STREAM else 'udp'}/{port}: unknown port") \
                from exc
        raise ValueError(go_lookup_error(host, exc)) from exc
    infos.sort(key=lambda info: info[0] != socket.AF_INET)  # Go prefers IPv4 on a dual answer
    return infos[0][0], infos[0][4]


def _addr(sockaddr: tuple) -> str:
    host = sockaddr[0]
    return f"[{host}]:{sockaddr[1]}" if ":" in host else f"{host}:{sockaddr[1]}"


def connect_stream(dest: str, timeout: float, proto: int, net: str) -> int:
    try:
        host, port = split_host_port(dest)
    except ValueError as exc:
        return _fail(f"UNKNOWN: {exc}")
    try:
        family, sockaddr = _resolve(host, port, socket.SOCK_STREAM)
    except ValueError as exc:
        return _fail(f"DNS: {exc}")
    try:
        sock = socket.socket(family, socket.SOCK_STREAM, proto)
    except OSError as exc:
        return _fail(f"OTHER: socket: {go_errno(exc.errno)}")
    with sock:
        sock.settimeout(timeout if timeout > 0 else None)
        try:
            sock.connect(sockaddr)
            return 0
        except TimeoutError:
            return _fail("TIMEOUT")
        except OSError as exc:
            if is_timeout(exc.errno):
                return _fail("TIMEOUT")
            if exc.errno == errno.ECONNREFUSED and net == "tcp":
                return _fail("REFUSED")
            return _fail(f"OTHER: dial {net} {_addr(sockaddr)}: connect: {go_errno(exc.errno)}")


def connect_udp(dest: str, timeout: float, data: str) -> int:
    try:
        host, port = split_host_port(dest)
        family, sockaddr = _resolve(host, port, socket.SOCK_DGRAM)
    except ValueError as exc:
        return _fail(f"DNS: {exc}")
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(sockaddr)
        except OSError as exc:
            return _fail(f"OTHER: dial udp {_addr(sockaddr)}: connect: {go_errno(exc.errno)}")
        if timeout > 0:
            sock.settimeout(timeout)
        local = _addr(sock.getsockname())
        op = "write"
        try:
            sock.send(f"{data}\n".encode())
            op = "read"
            reply = sock.recv(1024)
        except TimeoutError:
            return _fail(f"TIMEOUT: {op} udp {local}->{_addr(sockaddr)}: i/o timeout")
        except OSError as exc:
            message = f"{op} udp {local}->{_addr(sockaddr)}: {op}: {go_errno(exc.errno)}"
            if is_timeout(exc.errno):
                return _fail(f"TIMEOUT: {message}")
            if "connection refused" in message:
                return _fail(f"REFUSED: {message}")
            return _fail(f"UNKNOWN: {message}")
        if not reply:
            return _fail("OTHER: No data received from the server. Cannot guarantee the server received the request.")
    return 0


def main(argv: list[str]) -> int:
    flags, args = parse_args(argv, {"timeout": "0", "protocol": "tcp", "udp_data": "hostname"})
    if len(args) != 1:
        print(f"Error: accepts 1 arg(s), received {len(args)}\nUsage:\n  app connect [host:port] [flags]",
              file=sys.stderr, flush=True)
        return 1
    try:
        timeout = parse_go_duration(str(flags["timeout"]))
    except ValueError as exc:
        print(f'Error: invalid argument "{flags["timeout"]}" for "--timeout" flag: {exc}', file=sys.stderr,
              flush=True)
        return 1
    protocol = flags["protocol"]
    if protocol in ("", "tcp"):
        return connect_stream(args[0], timeout, 0, "tcp")
    if protocol == "udp":
        return connect_udp(args[0], timeout, flags["udp_data"])
    if protocol == "sctp":
        return connect_stream(args[0], timeout, socket.IPPROTO_SCTP, "sctp")
    sys.stderr.write(f"Unsupported protocol\n{protocol}")  # upstream's fmt.Fprint, without a final newline
    sys.stderr.flush()
    return 1
