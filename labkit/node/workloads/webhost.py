"""A web host of the outside world (203.0.113.0/24): answers every HTTP request with its own name.

`/clientip` answers "ip:port" of the client, which shows that pod traffic leaves the node masqueraded
to the node's address (172.18.0.2).
"""

from __future__ import annotations

import asyncio
from typing import Any

from labkit.node.workloads.http import Request, Response, serve_http

TEXT = [("Content-Type", "text/plain; charset=utf-8")]


def main(spec: dict[str, Any]) -> int:
    name = spec["name"]

    async def handler(req: Request) -> Response:
        if req.path == "/clientip":
            return Response(200, f"{req.peer[0]}:{req.peer[1]}".encode(), TEXT)
        return Response(200, name.encode(), TEXT)

    async def run() -> None:
        await serve_http(handler, int(spec.get("port", 80)), host=spec["ip"], server_header="labkit-webhost")
        await asyncio.get_running_loop().create_future()

    asyncio.run(run())
    return 0
