"""`python -m labkit.node --kubeconfig PATH --home STATE_DIR [--node-name NAME]`: run the node agent.

`python -m labkit.node --home STATE_DIR --prepare` only creates the node's network namespaces and starts the
zygote, then exits: what must exist before the API server can listen inside the node's namespace
(`python -m labkit.apiserver --node-netns <prefix>-node`); it prints that namespace's name.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from labkit.node.kubelet import NODE_NAME, Kubelet
from labkit.node.node import Node


async def _serve(kubeconfig: Path, home: Path, node_name: str, own_zygote: bool = True) -> None:
    from labkit.client import Client
    from labkit.node.streaming import StreamingServer

    client = Client.from_kubeconfig(kubeconfig, user_agent=f"kubelet/v1.32.5-labkit ({node_name})")
    node = Node(home)
    kubelet = Kubelet(client, node, home, node_name, own_zygote=own_zygote)
    # kubelet's streaming server: exec, attach, logs, port-forward, which the API server proxies to.
    streaming = StreamingServer(kubelet, node.zygote, node.network.node_netns_path)
    await streaming.start(node.names.kubelet_socket)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = asyncio.create_task(kubelet.run())
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if runner in done:
        runner.result()  # a start-up failure: let it surface
    runner.cancel()
    await streaming.stop()
    await kubelet.recorder.flush()
    await client.close()
    # Containers keep running in the zygote: a restarted agent adopts them (like kubelet and containerd).


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m labkit.node")
    parser.add_argument("--home", required=True, type=Path, help="the cluster's state directory (LABKIT_HOME)")
    parser.add_argument("--kubeconfig", type=Path, help="how to reach the API server")
    parser.add_argument("--node-name", default=NODE_NAME)
    parser.add_argument("--external-zygote", action="store_true",
                        help="use the zygote the cluster's supervisor runs (it outlives this agent, not the cluster)")
    parser.add_argument("--prepare", action="store_true",
                        help="create the node network and the zygote, print the node netns name, and exit")
    args = parser.parse_args()
    home = args.home.absolute()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s kubelet %(levelname)s %(message)s")
    if args.prepare:
        node = Node(home)
        node.start()
        print(node.names.node_netns)
        return
    if args.kubeconfig is None:
        parser.error("--kubeconfig is required")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_serve(args.kubeconfig, home, args.node_name, own_zygote=not args.external_zygote))


if __name__ == "__main__":
    main()
