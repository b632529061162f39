"""`python -m labkit.apiserver --home STATE_DIR`: run the embedded cluster's API server.

Listens on 127.0.0.1 (the port is kept in `<home>/apiserver.port`, so a
restarted server comes back where its clients expect it) and, with
`--node-netns`, also at the node's address inside the node's network
namespace for in-cluster clients.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import ssl
from pathlib import Path

from aiohttp import web

from labkit import aio
from labkit import pki as pki_mod
from labkit.apiserver import bootstrap
from labkit.apiserver.registry import Registry
from labkit.apiserver.server import ApiServer, ssl_context, unix_socket
from labkit.apiserver.storage import Store
from labkit.netns import NETNS_DIR, listen_in_netns


def _loopback_socket(port_file: Path) -> socket.socket:
    port = int(port_file.read_text()) if port_file.exists() else 0
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(512)
    sock.setblocking(False)
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(sock.getsockname()[1]))
    tmp.replace(port_file)
    return sock


def _warm_openapi() -> None:
    from labkit.apiserver import openapi

    openapi.openapi_v3_index()


async def _listen_in_node(runner: web.AppRunner, ctx: ssl.SSLContext, netns: str, host: str, port: int) -> None:
    """Also serve at the node's address, once the supervisor has made the node's namespace.

    IP_FREEBIND lets the socket bind before the address is configured on the node's eth0.
    """
    path = NETNS_DIR / netns
    for _ in range(500):
        if path.exists():
            break
        await asyncio.sleep(0.01)
    else:
        logging.getLogger("labkit.apiserver").error("node namespace %s never appeared", netns)
        return
    sock = await asyncio.to_thread(listen_in_netns, netns, host, port, freebind=True)
    await web.SockSite(runner, sock, ssl_context=ctx).start()
    logging.getLogger("labkit.apiserver").info("Serving securely on %s:%d", host, port)


async def serve(home: Path, node_netns: str | None, node_address: str, kubelet_socket: Path | None = None) -> None:
    pki = pki_mod.ensure(home / "pki")
    tokens = {pki.admin_token.read_text().strip(): "kubernetes-admin",
              pki.sa_token.read_text().strip(): "system:serviceaccount:kube-system:default"}
    store = Store(home / "state.db")
    registry = Registry(store)
    bootstrap.ensure_system_objects(registry)
    server = ApiServer(registry, tokens, readonly_tokens=frozenset({pki.sa_token.read_text().strip()}),
                       server_address=node_address)
    from labkit.apiserver import podio  # exec, attach, logs, port-forward: proxied to the node

    podio.install(server, kubelet_socket)
    runner = web.AppRunner(server.app, access_log=None, handle_signals=False)
    await runner.setup()
    ctx = ssl_context(str(pki.server_cert), str(pki.server_key))
    loopback = _loopback_socket(home / "apiserver.port")
    await web.SockSite(runner, loopback, ssl_context=ctx).start()
    # kube-apiserver's first lines in `kubectl logs -n kube-system kube-apiserver-<node>` (secure_serving.go)
    logging.getLogger("labkit.apiserver").info("Serving securely on 127.0.0.1:%d", loopback.getsockname()[1])
    # Plain HTTP on a 0600 Unix socket for the cluster's own host-side components (their client reads
    # LABKIT_APISERVER_SOCKET): TLS costs them a fifth of their CPU and buys nothing on one host.
    await web.SockSite(runner, unix_socket(home / "apiserver.sock")).start()
    (home / "apiserver.ready").write_text("ok")
    loop = asyncio.get_running_loop()
    # Build the OpenAPI documents and the field schema now, off the request path: the first
    # `kubectl apply` would otherwise wait about a second for them.
    warm = loop.run_in_executor(None, _warm_openapi)
    if node_netns:
        host, _, port = node_address.rpartition(":")
        await _listen_in_node(runner, ctx, node_netns, host, int(port))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    warm.cancel()
    await runner.cleanup()
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m labkit.apiserver")
    parser.add_argument("--home", required=True, type=Path, help="the cluster's state directory")
    parser.add_argument("--node-netns", help="also listen inside this network namespace")
    parser.add_argument("--node-address", default="172.18.0.2:6443")
    parser.add_argument("--kubelet-socket", type=Path,
                        help="the node's streaming server (exec, attach, logs, port-forward, proxy)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s apiserver %(levelname)s %(message)s")
    aio.run(serve(args.home, args.node_netns, args.node_address, args.kubelet_socket))  # uvloop where installed


if __name__ == "__main__":
    main()
