"""agnhost dns-suffix, dns-server-list and etc-hosts (test/images/agnhost/dns/common.go, dns.go on Linux).

They print what the container's resolver files say, as the e2e DNS tests read them:
- dns-suffix: the words of the first line starting with "search", after the keyword, joined by ",";
- dns-server-list: the same for the first "nameserver" line (one server, as upstream reads one line);
- etc-hosts: /etc/hosts followed by a newline (fmt.Println of the file).
A missing line or file is a Go panic (exit status 2); upstream's dns-server-list panics with the search
list's message, which is kept.
"""

from __future__ import annotations

import sys

RESOLV_CONF = "/etc/resolv.conf"
ETC_HOSTS = "/etc/hosts"
NOT_FOUND = "Could not find DNS search list!"


class GoPanic(Exception):
    """What a Go program's panic(value) prints before exiting with status 2."""


def _panic_exit(exc: GoPanic) -> int:
    print(f"panic: {exc}\n\ngoroutine 1 [running]:", file=sys.stderr, flush=True)
    return 2


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError as exc:
        raise GoPanic(f"open {path}: {(exc.strerror or '').lower()}") from exc


def _words_after(keyword: str) -> list[str]:
    for line in _read(RESOLV_CONF).split("\n"):
        if line.startswith(keyword):
            return line.split(" ")[1:]
    raise GoPanic(NOT_FOUND)


def _print_words(keyword: str) -> int:
    try:
        print(",".join(_words_after(keyword)), flush=True)
    except GoPanic as exc:
        return _panic_exit(exc)
    return 0


def dns_suffix(argv: list[str]) -> int:
    return _print_words("search")


def dns_server_list(argv: list[str]) -> int:
    return _print_words("nameserver")


def etc_hosts(argv: list[str]) -> int:
    try:
        print(_read(ETC_HOSTS), flush=True)
    except GoPanic as exc:
        return _panic_exit(exc)
    return 0
