"""A small async Kubernetes API client, and an informer built on it.

labkit's own components (controllers, node agent, IPVS agent, DNS server) use
this instead of the official client: they handle thousands of objects as plain
dicts, where model objects would cost more than the work itself. Notebooks and
tests use the official `kubernetes` client and kubectl, which work unchanged.

    async with Client.from_kubeconfig(path) as client:
        svc = await client.get("svc", "nginx", "default")
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from labkit import errors, kinds, kubeconfig
from labkit.kinds import ResourceKind

log = logging.getLogger("labkit.client")

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
PATCH_CONTENT_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}
# Set by the embedded cluster's supervisor for the components it runs on the host: the path of the API server's
# Unix-domain socket (plain HTTP, reachable only by root: the socket is mode 0600 in the state directory). It spares
# each request and watch event the TLS record and the loopback TCP stack. kubeconfigs, kubectl and the official
# client are unaffected: they keep using HTTPS.
SOCKET_ENV = "LABKIT_APISERVER_SOCKET"


@dataclass(frozen=True)
class WatchEvent:
    type: str
    object: dict


def _kind(resource: str | ResourceKind) -> ResourceKind:
    return resource if isinstance(resource, ResourceKind) else kinds.lookup(resource)


class Client:
    """Async access to one API server with a bearer token over TLS (or over a local Unix socket, see SOCKET_ENV)."""

    def __init__(self, server: str, token: str, ca_data: bytes | None = None, *, user_agent: str = "labkit",
                 unix_socket: str | None = None, ssl_context: ssl.SSLContext | None = None) -> None:
        if unix_socket and type(self).session is not Client.session:
            # A subclass that builds its own session (the IPVS agent dials from another network namespace)
            # chose its own transport: keep the kubeconfig's HTTPS for it.
            unix_socket = None
        self.unix_socket = unix_socket
        self.server = server.rstrip("/")
        # Requests go to `base_url + path`; over the Unix socket the host part is only a placeholder.
        self.base_url = "http://localhost" if unix_socket else self.server
        self._token = token
        self.ca_data = ca_data
        self._ssl: ssl.SSLContext | bool
        if ssl_context is not None:
            self._ssl = ssl_context
        elif ca_data:
            self._ssl = ssl.create_default_context(cadata=ca_data.decode())
        else:
            self._ssl = ssl.create_default_context()
        self._headers = {"User-Agent": user_agent, "Accept": "application/json"}
        if token:  # else the client certificate in `ssl_context` authenticates
            self._headers["Authorization"] = f"Bearer {token}"
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, path: str | Path | None = None, *, user_agent: str = "labkit",
                        unix_socket: str | None = None) -> Client:
        """A client for the kubeconfig's current context.

        `unix_socket` (default: $LABKIT_APISERVER_SOCKET, for a loopback server only) reaches the same API
        server over its local Unix socket instead of HTTPS; the token is still sent and checked.
        """
        access = kubeconfig.read(path)
        server = access.server
        if unix_socket is None and server.startswith("https://127.0.0.1:"):
            # Only where the socket is visible: a process in a mount namespace of its own keeps using HTTPS.
            env_socket = os.environ.get(SOCKET_ENV)
            if env_socket and os.path.exists(env_socket):
                unix_socket = env_socket
        return cls(server, access.token, access.ca_data, user_agent=user_agent, unix_socket=unix_socket,
                   ssl_context=access.ssl_context() if access.cert_data else None)

    @classmethod
    def in_cluster(cls, *, user_agent: str = "labkit") -> Client:
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        token = (SA_DIR / "token").read_text().strip()
        return cls(f"https://{host}:{port}", token, (SA_DIR / "ca.crt").read_bytes(), user_agent=user_agent)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector: aiohttp.BaseConnector
            if self.unix_socket:
                connector = aiohttp.UnixConnector(path=self.unix_socket, limit=64)
            else:
                connector = aiohttp.TCPConnector(ssl=self._ssl, limit=64)
            self._session = aiohttp.ClientSession(connector=connector, headers=self._headers)
        return self._session

    # -- plumbing -----------------------------------------------------------------------------
    async def request(self, method: str, path: str, *, params: dict | None = None, body: Any = None,
                      content_type: str = "application/json", accept: str | None = None) -> dict:
        data = None
        headers = {"Accept": accept} if accept else {}
        if body is not None:
            # orjson: the client's encode/decode is a visible share of a controller's CPU per write.
            data = body if isinstance(body, bytes) else orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)
            headers["Content-Type"] = content_type
        try:
            async with self.session.request(method, self.base_url + path, params=params, data=data,
                                            headers=headers) as resp:
                payload = await resp.read()
                return self._decode(resp.status, payload)
        except aiohttp.ClientError as exc:
            where = self.unix_socket or self.server
            raise errors.ClusterError(f"cannot reach the API server at {where}: {exc}") from exc

    @staticmethod
    def _decode(status: int, payload: bytes) -> dict:
        try:
            body = orjson.loads(payload) if payload else {}
        except ValueError:
            body = {"message": payload.decode(errors="replace")}
        if status >= 400:
            raise errors.ApiError.from_status(body if isinstance(body, dict) else {}, status)
        return body

    # -- verbs --------------------------------------------------------------------------------
    async def get(self, resource: str | ResourceKind, name: str, namespace: str | None = None) -> dict:
        kind = _kind(resource)
        obj = await self.request("GET", kind.path(namespace, name))
        return obj

    async def list(self, resource: str | ResourceKind, namespace: str | None = None, *,
                   label_selector: str | None = None, field_selector: str | None = None) -> tuple[list[dict], str]:
        kind = _kind(resource)
        params = {k: v for k, v in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if v}
        body = await self.request("GET", kind.path(namespace), params=params)
        items = body.get("items") or []
        for item in items:  # list items come without their type; give it back
            item.setdefault("apiVersion", kind.api_version)
            item.setdefault("kind", kind.kind)
        return items, body.get("metadata", {}).get("resourceVersion", "")

    async def create(self, obj: dict, namespace: str | None = None) -> dict:
        kind = kinds.for_object(obj)
        ns = namespace or obj.get("metadata", {}).get("namespace") or (None if not kind.namespaced else "default")
        return await self.request("POST", kind.path(ns), body=obj)

    async def replace(self, obj: dict, subresource: str | None = None) -> dict:
        kind = kinds.for_object(obj)
        meta = obj["metadata"]
        return await self.request("PUT", kind.path(meta.get("namespace"), meta["name"], subresource), body=obj)

    async def patch(self, resource: str | ResourceKind, name: str, patch: Any, namespace: str | None = None, *,
                    patch_type: str = "merge", subresource: str | None = None, field_manager: str | None = None,
                    force: bool = False) -> dict:
        kind = _kind(resource)
        params = {}
        if field_manager:
            params["fieldManager"] = field_manager
        if force:
            params["force"] = "true"
        return await self.request("PATCH", kind.path(namespace, name, subresource), params=params, body=patch,
                                  content_type=PATCH_CONTENT_TYPES[patch_type])

    async def delete(self, resource: str | ResourceKind, name: str, namespace: str | None = None, *,
                     propagation_policy: str | None = None, grace_period_seconds: int | None = None,
                     preconditions: dict | None = None) -> dict:
        kind = _kind(resource)
        opts: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation_policy:
            opts["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            opts["gracePeriodSeconds"] = grace_period_seconds
        if preconditions:
            opts["preconditions"] = preconditions
        return await self.request("DELETE", kind.path(namespace, name), body=opts)

    async def bind_pod(self, namespace: str, name: str, node: str) -> dict:
        """Place a pod on a node through the binding subresource, as the scheduler does."""
        body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": namespace},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        return await self.request("POST", kinds.lookup("pods").path(namespace, name, "binding"), body=body)

    async def watch(self, resource: str | ResourceKind, namespace: str | None = None, *,
                    resource_version: str | None = None, label_selector: str | None = None,
                    field_selector: str | None = None, timeout_seconds: int | None = None,
                    bookmarks: bool = True) -> AsyncIterator[WatchEvent]:
        kind = _kind(resource)
        params = {"watch": "true"}
        if resource_version:
            params["resourceVersion"] = resource_version
        if bookmarks:
            params["allowWatchBookmarks"] = "true"
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        if timeout_seconds:
            params["timeoutSeconds"] = str(timeout_seconds)
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        try:
            async with self.session.get(self.base_url + kind.path(namespace), params=params,
                                        timeout=timeout) as resp:
                if resp.status >= 400:
                    self._decode(resp.status, await resp.read())
                async for line in resp.content:
                    if not line.strip():
                        continue
                    event = orjson.loads(line)
                    if event["type"] == "ERROR":
                        status = event["object"]
                        raise errors.ApiError.from_status(status, int(status.get("code") or 500))
                    yield WatchEvent(event["type"], event["object"])
        except aiohttp.ClientError as exc:
            raise errors.ClusterError(f"watch of {kind.plural} interrupted: {exc}") from exc


Handler = Callable[[str, dict, "dict | None"], None]


class Informer:
    """A cache of one resource kept current by list + watch, with change callbacks.

    Resumes the watch from the last resourceVersion after a disconnect or an API
    server restart; relists after `410 Expired` and reports what changed in
    between as synthetic events, so handlers always see a consistent history.
    """

    def __init__(self, client: Client, resource: str, namespace: str | None = None, *,
                 label_selector: str | None = None, field_selector: str | None = None) -> None:
        self.client = client
        self.kind = kinds.lookup(resource)
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.by_key: dict[tuple[str, str], dict] = {}
        self._handlers: list[Handler] = []
        self._synced = asyncio.Event()
        self.resource_version = ""

    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def get(self, namespace: str | None, name: str) -> dict | None:
        return self.by_key.get((namespace or "", name))

    def items(self) -> list[dict]:
        return list(self.by_key.values())

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    def _notify(self, typ: str, obj: dict, old: dict | None) -> None:
        for handler in self._handlers:
            try:
                handler(typ, obj, old)
            except Exception:  # a handler's bug must not stop the informer
                log.exception("informer handler failed for %s %s", typ, self.kind.plural)

    @staticmethod
    def _key(obj: dict) -> tuple[str, str]:
        return (obj["metadata"].get("namespace", "") or "", obj["metadata"]["name"])

    async def _relist(self) -> None:
        items, rv = await self.client.list(self.kind, self.namespace, label_selector=self.label_selector,
                                           field_selector=self.field_selector)
        fresh = {self._key(o): o for o in items}
        for key, old in list(self.by_key.items()):
            if key not in fresh:
                del self.by_key[key]
                self._notify("DELETED", old, old)
        for key, obj in fresh.items():
            old = self.by_key.get(key)
            self.by_key[key] = obj
            if old is None:
                self._notify("ADDED", obj, None)
            elif old["metadata"].get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                self._notify("MODIFIED", obj, old)
        self.resource_version = rv
        self._synced.set()

    async def run(self) -> None:
        """List, then watch forever; never returns unless cancelled."""
        delay = 0.05
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                async for event in self.client.watch(self.kind, self.namespace,
                                                     resource_version=self.resource_version,
                                                     label_selector=self.label_selector,
                                                     field_selector=self.field_selector):
                    delay = 0.05
                    obj = event.object
                    rv = obj.get("metadata", {}).get("resourceVersion")
                    if rv:
                        self.resource_version = rv
                    if event.type == "BOOKMARK":
                        continue
                    obj.setdefault("apiVersion", self.kind.api_version)
                    obj.setdefault("kind", self.kind.kind)
                    key = self._key(obj)
                    old = self.by_key.get(key)
                    if event.type == "DELETED":
                        self.by_key.pop(key, None)
                    else:
                        self.by_key[key] = obj
                    self._notify(event.type, obj, old)
            except errors.Gone:
                need_list = True
            except (errors.ClusterError, errors.ApiError, aiohttp.ClientError, OSError, ValueError) as exc:
                log.debug("watch of %s failed (%s); retrying in %.2fs", self.kind.plural, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
