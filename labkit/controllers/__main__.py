"""`python -m labkit.controllers --kubeconfig PATH`: run labkit's controller manager."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from labkit import aio


async def _main(kubeconfig: str) -> None:
    from labkit.client import Client

    from .manager import Manager

    client = Client.from_kubeconfig(kubeconfig, user_agent="kube-controller-manager/labkit")
    mgr = Manager(client)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await mgr.start()
    try:
        await stop.wait()
    finally:
        await mgr.stop()
        await client.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m labkit.controllers", description=__doc__)
    ap.add_argument("--kubeconfig", required=True, help="kubeconfig of the API server to work against")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    aio.run(_main(args.kubeconfig))
    return 0


if __name__ == "__main__":
    sys.exit(main())
