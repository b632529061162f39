"""The web hosts of the outside world (203.0.113.0/24): each answers every HTTP request with its own name.

One process serves them all (`spec["hosts"]`: name and address of each); a request is answered with the name of
the host whose address it reached.

`/clientip` answers "ip:port" of the client, which shows that pod traffic leaves the node masqueraded
to the node's address (172.18.0.2).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from labkit.node.workloads.http import Request, Response, serve_http

TEXT = [("Content-Type", "text/plain; charset=utf-8")]


def main(spec: dict[str, Any]) -> int:
    def handler_for(name: str) -> Callable[[Request], Awaitable[Response]]:
        async def handler(req: Request) -> Response:
            if req.path == "/clientip":
                return Response(200, f"{req.peer[0]}:{req.peer[1]}".encode(), TEXT)
            return Response(200, name.encode(), TEXT)

        return handler

    async def run() -> None:
        port = int(spec.get("port", 80))
        for host in spec["hosts"]:
            await serve_http(handler_for(host["name"]), port, host=host["ip"], server_header="labkit-webhost")
        await asyncio.get_running_loop().create_future()

    asyncio.run(run())
    return 0
