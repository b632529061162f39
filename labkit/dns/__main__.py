"""`python -m labkit.dns serve | upstream | query | dig`.

- `serve [-conf FILE] [-dns.port P] [-quiet]`: the coredns binary (labkit.dns.coredns): the cluster DNS, run by
  the `coredns` pods as `-conf /etc/coredns/Corefile` (the Deployment's args).
- `upstream --config F --listen 203.0.113.53:53`: the "outside world" DNS (labkit.dns.upstream).
- `query --server S [--port P] [--tcp] HEX`: one wire exchange from this namespace, reply printed as hex.
- `dig NAME [TYPE] ...`: labkit.dns.dig.dig_main.
"""

from __future__ import annotations

import argparse
import sys

from labkit import aio
from labkit.dns.coredns import serve_main
from labkit.dns.dig import dig_main, query_main
from labkit.dns.server import Listener
from labkit.dns.upstream import UpstreamHandler, load_config


def split_listen(text: str, default_port: int = 53) -> tuple[str, int]:
    """'0.0.0.0:53' → ('0.0.0.0', 53); '[::]:53' → ('::', 53); '127.0.0.1' → ('127.0.0.1', default)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest.lstrip(":") or default_port)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host or "0.0.0.0", int(port)
    return text, default_port


async def _serve_until_signal(listener: Listener) -> None:
    await listener.start()
    await aio.stop_event().wait()
    await listener.stop()


def upstream_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m labkit.dns upstream")
    ap.add_argument("--config", help="YAML zone data (default: the built-in example.net data)")
    ap.add_argument("--listen", default="203.0.113.53:53")
    args = ap.parse_args(argv)
    host, port = split_listen(args.listen)
    aio.run(_serve_until_signal(Listener(UpstreamHandler(load_config(args.config)), host, port)))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"serve": serve_main, "upstream": upstream_main, "query": query_main, "dig": dig_main}
    if not argv or argv[0] not in commands:
        print("usage: python -m labkit.dns {serve|upstream|query|dig} ...", file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
