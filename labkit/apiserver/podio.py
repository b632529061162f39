"""pods/exec, pods/attach, pods/log, pods/portforward: authenticated here, served by the node.

As kube-apiserver proxies these subresources to the kubelet of the pod's node, the API server checks the request
(the pod exists and is bound to a node, the container is one of the pod's) and relays it to the node's streaming
server (labkit.node.streaming), which alone knows where a pod's containers, processes and logs are. It reaches
the node over the node's Unix socket (`--kubelet-socket`, what kube-apiserver's kubelet port is).

WebSocket sessions (exec and attach on `v5.channel.k8s.io`/`v4.channel.k8s.io`, port-forward on
`SPDY/3.1+portforward.k8s.io`) are relayed message by message; the node picks the subprotocol. SPDY upgrades,
which kubectl ≤ 1.29 uses (and newer ones only as a fallback), are not served.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import WSMsgType, web
from yarl import URL

from labkit import errors, kinds

ERROR_HEADER = "X-Stream-Error"  # where the node puts the reason of a refused upgrade (labkit.node.streaming)
EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
PORT_FORWARD_PROTOCOLS = ("SPDY/3.1+portforward.k8s.io",)
NOT_UPGRADED = "a WebSocket upgrade"  # the node's answer to a request that is not a WebSocket upgrade


def container_name(pod: dict, query: dict) -> str:
    """The container a request names (the only one when the pod has one), as kube-apiserver checks it."""
    spec = pod.get("spec") or {}
    containers = [c["name"] for c in spec.get("containers") or []]
    others = [c["name"] for key in ("initContainers", "ephemeralContainers") for c in spec.get(key) or []]
    name = query.get("container") or (containers[0] if len(containers) == 1 else "")
    pod_name = pod["metadata"]["name"]
    if not name:
        raise errors.BadRequest(f"a container name must be specified for pod {pod_name}, choose one of: "
                                f"[{' '.join(containers)}]" + (f" or one of the init containers: [{' '.join(others)}]"
                                                               if others else ""))
    if name not in containers + others:
        raise errors.BadRequest(f"container {name} is not valid for pod {pod_name}")
    return name


class NodeStreams:
    """The API server's side of the node's streaming server."""

    def __init__(self, socket_path: str | Path) -> None:
        self.socket_path = str(socket_path)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=self.socket_path),
                                                  timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    @staticmethod
    def _node_of(pod: dict) -> str:
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            raise errors.BadRequest(f'pod {pod["metadata"]["name"]} does not have a host assigned')
        return node

    async def handle(self, request: web.Request, pod: dict, sub: str) -> web.StreamResponse:
        self._node_of(pod)
        ns, name = pod["metadata"].get("namespace") or "default", pod["metadata"]["name"]
        query = dict(request.query)
        if sub == "log":
            container = container_name(pod, query)
            return await self._logs(request, f"/containerLogs/{quote(ns)}/{quote(name)}/{quote(container)}")
        if sub in ("exec", "attach"):
            container = container_name(pod, query)
            path = f"/{sub}/{quote(ns)}/{quote(name)}/{quote(container)}"
            return await self._websocket(request, path, EXEC_PROTOCOLS)
        if sub == "portforward":
            return await self._websocket(request, f"/portForward/{quote(ns)}/{quote(name)}", PORT_FORWARD_PROTOCOLS)
        raise errors.NotFound("the server could not find the requested resource")

    @staticmethod
    def _url(path: str, request: web.Request) -> URL:
        """The node's URL with the client's query string as it came (already encoded: a command's newlines and
        spaces stay as they are)."""
        query = request.raw_path.partition("?")[2]
        return URL(f"http://node{path}" + (f"?{query}" if query else ""), encoded=True)

    async def _logs(self, request: web.Request, path: str) -> web.StreamResponse:
        try:
            upstream = await self._client().get(self._url(path, request))
        except aiohttp.ClientError as exc:
            raise errors.ServiceUnavailable(f"the node's streaming server does not answer: {exc}") from None
        async with upstream:
            if upstream.status != 200:
                raise _node_error(upstream.status, await upstream.text())
            response = web.StreamResponse(headers={"Content-Type": "text/plain"})
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def proxy(self, request: web.Request, ip: str, port: int, path: str) -> web.StreamResponse:
        """Pass an HTTP request on to ip:port through the node, and its answer back."""
        query = request.raw_path.partition("?")[2]
        url = URL(f"http://node/proxy/{ip}/{port}/{path}" + (f"?{query}" if query else ""), encoded=True)
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("authorization", "host", "connection", "content-length", "transfer-encoding")}
        try:
            async with self._client().request(request.method, url, headers=headers, data=await request.read(),
                                              allow_redirects=False, auto_decompress=False) as answer:
                body = await answer.read()
                if answer.status == 503 and ERROR_HEADER in answer.headers:
                    raise errors.ServiceUnavailable(answer.headers[ERROR_HEADER])
                out = web.Response(status=answer.status, reason=answer.reason, body=body)
                for name, value in answer.headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        out.headers.add(name, value)
                return out
        except aiohttp.ClientError as exc:
            raise errors.ServiceUnavailable(f"the node's streaming server does not answer: {exc}") from None

    async def _websocket(self, request: web.Request, path: str, protocols: tuple[str, ...]) -> web.StreamResponse:
        client = web.WebSocketResponse(protocols=protocols, max_msg_size=0, autoping=True)
        if not client.can_prepare(request).ok:
            # Not a WebSocket (kubectl's SPDY attempt): the node's reason if it refuses the request anyway.
            async with self._client().get(self._url(path, request)) as answer:
                message = answer.headers.get(ERROR_HEADER) or await answer.text()
            if answer.status != 200 and NOT_UPGRADED not in message:
                raise _node_error(answer.status, message)
            raise errors.BadRequest(f"{request.match_info.get('tail', 'this request')}: a WebSocket upgrade with "
                                    f"protocol {' or '.join(protocols)} is required (SPDY is not supported by labkit)")
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        try:
            node = await self._client().ws_connect(self._url(path, request), protocols=offered or protocols,
                                                   max_msg_size=0, autoping=True, heartbeat=None)
        except aiohttp.WSServerHandshakeError as exc:
            message = (exc.headers or {}).get(ERROR_HEADER) or exc.message
            raise _node_error(exc.status, message) from None
        except aiohttp.ClientError as exc:
            raise errors.ServiceUnavailable(f"the node's streaming server does not answer: {exc}") from None
        client = web.WebSocketResponse(protocols=(node.protocol,) if node.protocol else protocols, max_msg_size=0,
                                       autoping=True)
        await client.prepare(request)
        await _relay(client, node)
        return client


async def _pass_on(source: Any, sink: Any) -> None:
    """Every message of one WebSocket to the other, until a close (or anything else) arrives."""
    async for msg in source:
        if msg.type == WSMsgType.BINARY:
            await sink.send_bytes(msg.data)
        elif msg.type == WSMsgType.TEXT:
            await sink.send_str(msg.data)
        else:
            break


async def _relay(client: web.WebSocketResponse, node: aiohttp.ClientWebSocketResponse) -> None:
    """Messages both ways until one side closes; the other side then gets the same close."""
    upstream = asyncio.create_task(_pass_on(client, node))
    try:
        await _pass_on(node, client)
    except ConnectionResetError:
        pass
    finally:
        upstream.cancel()
        with contextlib.suppress(Exception):
            await node.close()
        with contextlib.suppress(Exception):
            await client.close(code=node.close_code or 1000)


def _split_name(raw: str) -> tuple[str, str, str]:
    """SplitSchemeNamePort: `name`, `name:port`, `scheme:name:port`."""
    parts = raw.split(":")
    if len(parts) == 1:
        return "", parts[0], ""
    if len(parts) == 2:
        return "", parts[0], parts[1]
    if len(parts) == 3 and parts[0] in ("", "http", "https"):
        return parts[0], parts[1], parts[2]
    raise errors.BadRequest(f"invalid request {raw!r}")


def _no_https(scheme: str) -> None:
    if scheme == "https":
        raise errors.BadRequest("the embedded labkit cluster proxies http only")


def pod_target(registry: Any, namespace: str, raw: str) -> tuple[str, int]:
    """pods/proxy: the pod's IP and port (a number, a named container port, else the first container port)."""
    scheme, name, port = _split_name(raw)
    _no_https(scheme)
    pod = registry.get(kinds.lookup("pods"), namespace, name)
    ip = (pod.get("status") or {}).get("podIP") or ""
    if not ip:
        raise errors.BadRequest(f'pod "{name}" does not have an IP address')
    if ip.startswith(("127.", "169.254.")):
        raise errors.BadRequest("address not allowed")
    ports = [p for c in (pod.get("spec") or {}).get("containers") or [] for p in c.get("ports") or []]
    if not port:
        return ip, int(ports[0]["containerPort"]) if ports else 80
    if port.isdigit():
        return ip, int(port)
    named = next((p for p in ports if p.get("name") == port), None)
    if named is None:
        raise errors.BadRequest(f'port "{port}" not found in pod "{name}"')
    return ip, int(named["containerPort"])


def service_target(registry: Any, namespace: str, raw: str) -> tuple[str, int]:
    """services/proxy: one of the Service's ready endpoints (chosen at random), on the port's target."""
    scheme, name, port = _split_name(raw)
    _no_https(scheme)
    svc = registry.get(kinds.lookup("services"), namespace, name)
    ports = (svc.get("spec") or {}).get("ports") or []
    if port:
        chosen = next((p for p in ports if p.get("name") == port or str(p.get("port")) == port), None)
    else:
        chosen = ports[0] if len(ports) == 1 else None
    if chosen is None:
        raise errors.ServiceUnavailable(f'no service port "{port}" found for service "{name}"')
    try:
        endpoints = registry.get(kinds.lookup("endpoints"), namespace, name)
    except errors.NotFound:
        endpoints = {}
    candidates = []
    for subset in endpoints.get("subsets") or []:
        match = next((p for p in subset.get("ports") or [] if (p.get("name") or "") == (chosen.get("name") or "")),
                     None)
        if match is not None:
            candidates += [(a["ip"], int(match["port"])) for a in subset.get("addresses") or []]
    if not candidates:
        raise errors.ServiceUnavailable(f'no endpoints available for service "{name}"')
    return random.choice(candidates)


def _node_error(status: int, message: str) -> errors.ApiError:
    """The node's refusal as kube-apiserver passes on a kubelet's (400 → BadRequest, 404 → NotFound)."""
    message = message.strip()
    if status == 404 and message.startswith("container not found"):
        return errors.BadRequest(f"unable to upgrade connection: {message}")
    if status == 404:
        return errors.NotFound(message)
    if status == 400:
        return errors.BadRequest(message)
    return errors.ApiError(message)


def install(server: object, kubelet_socket: Path | None) -> None:
    """Serve the pods' streams through the node whose streaming server listens at `kubelet_socket`."""
    if kubelet_socket is not None:
        server.pod_streams = NodeStreams(kubelet_socket)  # type: ignore[attr-defined]
