"""labkit's Kubernetes API server: HTTP routing, content negotiation and the REST verbs.

Layering, top to bottom:
- this module: aiohttp handlers — auth, URL → (kind, namespace, name, subresource),
  Accept/Content-Type negotiation, watch streaming, Status errors;
- `registry.py`: what each verb does to objects (defaulting, validation, allocation,
  optimistic concurrency, graceful deletion, finalizers);
- `storage.py`: durable objects, resourceVersions and the watch history.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import socket
import ssl
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiohttp import web

from labkit import errors, kinds
from labkit.apiserver import discovery, openapi, openapi_v2, protobuf, reviews, tables
from labkit.apiserver.registry import Registry
from labkit.apiserver.selectors import fields_match, labels_match, parse_field_selector, parse_label_selector
from labkit.apiserver.storage import WatchEvent
from labkit.kinds import ResourceKind

log = logging.getLogger("labkit.apiserver")

# What /version reports. The gcloud kubectl dispatcher on the development machines
# picks its bundled kubectl by this minor version (kubectl-contract.md).
VERSION_INFO = {
    "major": "1", "minor": "32", "gitVersion": "v1.32.5-labkit", "gitCommit": "labkit",
    "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23.8",
    "compiler": "gc", "platform": "linux/amd64",
}

TABLE_ACCEPT = "as=Table"
JSON = "application/json"


@dataclass
class Route:
    kind: ResourceKind
    namespace: str | None
    name: str | None
    sub: str | None
    subpath: str = ""  # what follows `proxy/` (pods/proxy, services/proxy)


def _now() -> datetime:
    return datetime.now(UTC)


def _json_response(body: Any, status: int = 200, content_type: str = JSON) -> web.Response:
    # Set the header directly: kubectl only accepts aggregated discovery under its exact media type.
    # orjson: compact like Go's encoder, non-ASCII as UTF-8 (as Go writes it), several times faster than json.
    return web.Response(body=orjson.dumps(body), status=status, headers={"Content-Type": content_type})


def status_response(err: errors.ApiError) -> web.Response:
    return _json_response(err.status(), status=err.code)


class ApiServer:
    """The API server: a Registry behind an aiohttp application."""

    def __init__(self, registry: Registry, tokens: dict[str, str], *, readonly_tokens: frozenset[str] = frozenset(),
                 server_address: str = "127.0.0.1:6443") -> None:
        self.registry = registry
        self.tokens = tokens  # token -> user name
        self.readonly_tokens = readonly_tokens
        self.server_address = server_address
        # One middleware, not two: each layer is another coroutine frame on every request.
        self.app = web.Application(middlewares=[self._middleware], client_max_size=16 * 1024 * 1024)
        self.app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._watch_tasks: set[asyncio.Task] = set()
        # Every watcher of a resource (controllers, agent, DNS, kubectl) gets the same event line: encode it
        # once. Keyed by (resourceVersion, type): a resourceVersion names one state of one object in the store.
        self._event_lines: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self.pod_streams: Any = None  # labkit.apiserver.podio.NodeStreams: exec, attach, logs, port-forward

    # -- middlewares --------------------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Authentication, then the handler; API errors (Unauthorized included) become Status responses."""
        try:
            self._authenticate(request)
            return await handler(request)
        except errors.ApiError as err:
            return status_response(err)
        except web.HTTPException:
            raise
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:  # a bug: answer like the real server, keep serving
            log.exception("internal error serving %s %s", request.method, request.path_qs)
            return status_response(errors.ApiError(
                f'an error on the server ("{exc}") has prevented the request from succeeding'))

    _PUBLIC = ("/version", "/healthz", "/livez", "/readyz")

    def _authenticate(self, request: web.Request) -> None:
        if request.path in self._PUBLIC or request.path.startswith(("/healthz/", "/livez/", "/readyz/")):
            return
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        user = next((u for t, u in self.tokens.items() if token and hmac.compare_digest(t, token)), None)
        if user is None:
            raise errors.Unauthorized("Unauthorized")
        request["user"] = user
        request["readonly"] = token in self.readonly_tokens

    # -- dispatch ------------------------------------------------------------------------------
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        if path == "/version":
            return _json_response(VERSION_INFO)
        if path in ("/healthz", "/livez", "/readyz") or path.startswith(("/healthz/", "/livez/", "/readyz/")):
            return web.Response(text="ok")
        if path in ("/api", "/apis"):
            return self._discovery_root(request, core=(path == "/api"))
        if path == "/openapi/v2":
            return web.Response(body=openapi_v2.document(), headers={"Content-Type": openapi_v2.MEDIA_TYPE})
        if path.startswith("/openapi/"):
            return self._openapi(path)
        if path == "/":
            paths = ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v3", "/readyz", "/version"]
            paths += [f"/{k.group_version}" for k in kinds.ALL_KINDS if k.group]
            return _json_response({"paths": sorted(set(paths))})
        segments = path.strip("/").split("/")
        if segments[0] == "api" and len(segments) == 2:
            return self._legacy_resources("", segments[1])
        if segments[0] == "apis" and len(segments) == 2:
            doc = discovery.legacy_group(segments[1])
            if doc is None:
                raise errors.NotFound("the server could not find the requested resource")
            return _json_response(doc)
        if segments[0] == "apis" and len(segments) == 3:
            return self._legacy_resources(segments[1], segments[2])
        route = self._parse_route(segments)
        return await self._serve_resource(request, route)

    def _parse_route(self, segments: list[str]) -> Route:
        if segments[0] == "api" and len(segments) >= 3:
            group, version, rest = "", segments[1], segments[2:]
        elif segments[0] == "apis" and len(segments) >= 4:
            group, version, rest = segments[1], segments[2], segments[3:]
        else:
            raise errors.NotFound("the server could not find the requested resource")
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            candidate = kinds.BY_PLURAL.get((group, rest[2]))
            if candidate is not None and candidate.namespaced:
                namespace, rest = rest[1], rest[2:]
        kind = kinds.BY_PLURAL.get((group, rest[0]))
        proxy = len(rest) > 3 and rest[2] == "proxy"
        if kind is None or kind.version != version or (len(rest) > 3 and not proxy):
            raise errors.NotFound("the server could not find the requested resource")
        name = rest[1] if len(rest) >= 2 else None
        sub = rest[2] if len(rest) >= 3 else None
        if sub is not None and sub not in kind.subresources:
            raise errors.NotFound("the server could not find the requested resource")
        return Route(kind, namespace, name, sub, "/".join(rest[3:]))

    def _discovery_root(self, request: web.Request, core: bool) -> web.Response:
        content_type = discovery.negotiate(request.headers.get("Accept", ""))
        if content_type:
            return _json_response(discovery.aggregated(core, content_type), content_type=content_type)
        if core:
            return _json_response(discovery.legacy_versions(self.server_address))
        return _json_response(discovery.legacy_groups())

    def _legacy_resources(self, group: str, version: str) -> web.Response:
        doc = discovery.legacy_resources(group, version)
        if doc is None:
            raise errors.NotFound("the server could not find the requested resource")
        return _json_response(doc)

    def _openapi(self, path: str) -> web.Response:
        if path == "/openapi/v3":
            return _json_response(openapi.openapi_v3_index())
        if path.startswith("/openapi/v3/"):
            doc = openapi.openapi_v3_document(path[len("/openapi/v3/"):])
            if doc is not None:
                return _json_response(doc)
        raise errors.NotFound("the server could not find the requested resource")

    # -- resources ----------------------------------------------------------------------------
    async def _serve_resource(self, request: web.Request, route: Route) -> web.StreamResponse:
        method = request.method
        q = request.query
        kind = route.kind
        if route.sub in ("exec", "log", "attach", "portforward"):
            return await self._pod_io(request, route)
        if route.sub == "proxy":
            return await self._proxy(request, route)
        if not kind.stored:
            if method != "POST" or route.name is not None:
                raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
            body = await self._read_body(request, kind)
            answer = reviews.review(kind.kind, kind.api_version, body, request["user"], request.get("readonly", False))
            return _json_response(answer, status=201)
        write = method in ("POST", "PUT", "PATCH", "DELETE")
        if write and request.get("readonly"):
            verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
            where = f' in the namespace "{route.namespace}"' if route.namespace else " at the cluster scope"
            raise errors.Forbidden(
                f'{kind.plural} is forbidden: User "{request["user"]}" cannot {verb} resource "{kind.plural}"'
                f' in API group "{kind.group}"{where}',
                details={"kind": kind.plural, "group": kind.group} | ({"name": route.name} if route.name else {}))
        if route.name is None:
            if method == "GET":
                if q.get("watch") in ("true", "1"):
                    return await self._watch(request, route)
                return self._list(request, route)
            if method == "POST":
                body = await self._read_body(request, kind)
                warnings = self._warnings(request)
                obj = self.registry.create(kind, route.namespace, body, manager=self._manager(request),
                                           dry_run=bool(q.get("dryRun")), strict=self._strict(request),
                                           warnings=warnings)
                return _warn(_json_response(obj, status=201), warnings)
            if method == "DELETE":
                opts = await self._delete_options(request)
                result = self.registry.delete_collection(
                    kind, route.namespace, parse_label_selector(q.get("labelSelector")),
                    parse_field_selector(q.get("fieldSelector"), kind.plural), opts)
                return _json_response(result)
            raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
        if method == "POST" and route.sub == "binding":
            body = await self._read_body(request, None)
            return _json_response(self.registry.bind(route.namespace, route.name, body), status=201)
        if method == "GET":
            if route.sub == "scale":
                return _json_response(self.registry.get_scale(kind, route.namespace, route.name))
            obj = self.registry.get(kind, route.namespace, route.name)
            if self._wants_table(request):
                table = tables.to_table(kind.plural, [obj], resource_version=obj["metadata"]["resourceVersion"],
                                        include_object=self._include_object(request), copy_metadata=False)
                return _json_response(table)
            return _json_response(obj)
        if method == "PUT":
            body = await self._read_body(request, None if route.sub == "scale" else kind)
            if route.sub == "scale":
                return _json_response(self.registry.put_scale(kind, route.namespace, route.name, body,
                                                              manager=self._manager(request)))
            warnings = self._warnings(request)
            obj, created = self.registry.update(kind, route.namespace, route.name, body, sub=route.sub,
                                                manager=self._manager(request), strict=self._strict(request),
                                                dry_run=bool(q.get("dryRun")), warnings=warnings)
            return _warn(_json_response(obj, status=201 if created else 200), warnings)
        if method == "PATCH":
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
            raw = await request.read()
            warnings = self._warnings(request)
            obj, created = self.registry.patch(
                kind, route.namespace, route.name, raw, content_type, sub=route.sub,
                manager=self._manager(request, default="" if content_type.endswith("apply-patch+yaml") else None),
                force=q.get("force") in ("true", "1"), strict=self._strict(request), dry_run=bool(q.get("dryRun")),
                warnings=warnings)
            return _warn(_json_response(obj, status=201 if created else 200), warnings)
        if method == "DELETE":
            opts = await self._delete_options(request)
            return _json_response(self.registry.delete(kind, route.namespace, route.name, opts))
        raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")

    async def _pod_io(self, request: web.Request, route: Route) -> web.StreamResponse:
        if route.kind.plural != "pods" or route.name is None:
            raise errors.NotFound("the server could not find the requested resource")
        pod = self.registry.get(route.kind, route.namespace, route.name)
        if route.sub in ("exec", "attach", "portforward") and request.get("readonly"):
            raise errors.Forbidden(
                f'pods "{route.name}" is forbidden: User "{request["user"]}" cannot create resource '
                f'"pods/{route.sub}" in API group "" in the namespace "{route.namespace}"')
        if self.pod_streams is None:
            raise errors.BadRequest(f"{route.sub} is not available: this API server does not know the node's "
                                    "streaming server")
        return await self.pod_streams.handle(request, pod, route.sub)

    async def _proxy(self, request: web.Request, route: Route) -> web.StreamResponse:
        """pods/proxy and services/proxy: the target chosen here, the connection made by the node."""
        if self.pod_streams is None:
            raise errors.BadRequest("proxy is not available: this API server does not know the node's streaming "
                                    "server")
        if request.get("readonly") and request.method not in ("GET", "HEAD", "OPTIONS"):
            raise errors.Forbidden(
                f'{route.kind.plural} "{route.name}" is forbidden: User "{request["user"]}" cannot create resource '
                f'"{route.kind.plural}/proxy" in API group "" in the namespace "{route.namespace}"')
        from labkit.apiserver import podio

        assert route.name is not None and route.namespace is not None
        if route.kind.plural == "pods":
            ip, port = podio.pod_target(self.registry, route.namespace, route.name)
        else:
            ip, port = podio.service_target(self.registry, route.namespace, route.name)
        return await self.pod_streams.proxy(request, ip, port, route.subpath)

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _include_object(request: web.Request) -> str:
        value = request.query.get("includeObject", "Metadata") or "Metadata"
        if value not in tables.INCLUDE_OBJECT_VALUES:
            raise errors.BadRequest(f'unrecognized includeObject value: "{value}"')
        return value

    @staticmethod
    def _wants_table(request: web.Request) -> bool:
        return TABLE_ACCEPT in request.headers.get("Accept", "")

    @staticmethod
    def _strict(request: web.Request) -> bool:
        return request.query.get("fieldValidation", "") == "Strict"

    @staticmethod
    def _warnings(request: web.Request) -> list[str] | None:
        """A list to collect dropped unknown fields in, under fieldValidation=Warn (the default since 1.27)."""
        return [] if request.query.get("fieldValidation", "Warn") == "Warn" else None

    @staticmethod
    def _manager(request: web.Request, default: str | None = None) -> str:
        """The field manager: the fieldManager parameter, else the user agent's program name."""
        manager = request.query.get("fieldManager")
        if manager:
            return manager
        if default == "":
            raise errors.BadRequest("PATCH requests with apply content type must provide a fieldManager")
        agent = request.headers.get("User-Agent", "unknown")
        return agent.split("/")[0] or "unknown"

    async def _read_body(self, request: web.Request, kind: ResourceKind | None) -> dict:
        raw = await request.read()
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        try:
            if protobuf.is_protobuf(raw):
                body = protobuf.decode(raw)
            elif content_type == "application/yaml":
                body = yaml.safe_load(raw)
            else:  # JSON, also when no Content-Type is sent (the Python client's create)
                body = orjson.loads(raw or b"null")
        except protobuf.ProtobufError as exc:
            raise errors.BadRequest(f"the body of the request was in an unknown format: {exc}") from None
        except (ValueError, yaml.YAMLError) as exc:
            what = kind.kind if kind else "object"
            raise errors.BadRequest(f"error decoding {what}: {exc}") from None
        if not isinstance(body, dict):
            raise errors.BadRequest("the body of the request must be an object")
        return body

    async def _delete_options(self, request: web.Request) -> dict:
        opts: dict = {}
        raw = await request.read()
        if raw.strip():
            try:
                opts = orjson.loads(raw)
            except ValueError:
                raise errors.BadRequest("error decoding DeleteOptions") from None
        q = request.query
        if "propagationPolicy" in q:
            opts["propagationPolicy"] = q["propagationPolicy"]
        if "gracePeriodSeconds" in q:
            opts["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
        if q.get("orphanDependents") in ("true", "false"):
            opts["orphanDependents"] = q["orphanDependents"] == "true"
        return opts

    # -- list and watch -----------------------------------------------------------------------
    _EVENT_LINES_MAX = 512

    def _event_line(self, typ: str, obj: dict, raw: bytes | None = None) -> bytes:
        """The watch line of one event; `raw` is the object's JSON when the store has it already."""
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if not rv:
            return _line({"type": typ, "object": obj})
        key = (rv, typ)
        line = self._event_lines.get(key)
        if line is None:
            # The store encoded the object for SQLite already: splice those bytes in rather than encode again.
            line = b'{"type":"%s","object":%s}\n' % (typ.encode(), raw) if raw is not None \
                else _line({"type": typ, "object": obj})
            self._event_lines[key] = line
            if len(self._event_lines) > self._EVENT_LINES_MAX:
                self._event_lines.popitem(last=False)
        return line

    def _list(self, request: web.Request, route: Route) -> web.Response:
        q = request.query
        kind = route.kind
        label_sel = parse_label_selector(q.get("labelSelector"))
        field_sel = parse_field_selector(q.get("fieldSelector"), kind.plural)
        items, rv, cont, remaining = self.registry.list(
            kind, route.namespace, label_sel, field_sel, limit=int(q.get("limit") or 0), cont=q.get("continue"))
        if self._wants_table(request):
            # Rows may share the stored metadata (copy_metadata=False): the Table is serialised at once and
            # stored objects are never mutated.
            table = tables.to_table(kind.plural, items, resource_version=str(rv),
                                    include_object=self._include_object(request), copy_metadata=False)
            if cont:
                table["metadata"]["continue"] = cont
            return _json_response(table)
        meta: dict = {"resourceVersion": str(rv)}
        if cont:
            meta["continue"] = cont
            meta["remainingItemCount"] = remaining
        return _json_response({"kind": kind.kind_list, "apiVersion": kind.api_version, "metadata": meta,
                               "items": [_without_type(o) for o in items]})

    async def _watch(self, request: web.Request, route: Route) -> web.StreamResponse:
        q = request.query
        kind = route.kind
        label_sel = parse_label_selector(q.get("labelSelector"))
        field_sel = parse_field_selector(q.get("fieldSelector"), kind.plural)
        as_table = self._wants_table(request)
        include_object = self._include_object(request)
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else None
        store = self.registry.store
        resource = (kind.group, kind.plural)

        def selected(obj: dict | None) -> bool:
            if obj is None:
                return False
            meta = obj["metadata"]
            if route.namespace and meta.get("namespace") != route.namespace:
                return False
            return labels_match(label_sel, meta.get("labels")) and fields_match(field_sel, obj)

        queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue()

        def listener(event: WatchEvent) -> None:
            if event.resource == resource:
                queue.put_nowait(event)

        unsubscribe = store.subscribe(listener)
        response = web.StreamResponse(status=200, headers={"Content-Type": JSON, "Cache-Control": "no-cache, private"})
        response.enable_chunked_encoding()
        first_table = True
        try:
            rv_param = q.get("resourceVersion", "")
            initial: list[tuple[str, dict]] = []
            if rv_param in ("", "0"):
                # A watch without a resourceVersion starts with the current state as ADDED events.
                initial = [("ADDED", o) for o in store.list(resource, route.namespace) if selected(o)]
                seen_rv = store.rv
            else:
                try:
                    since = int(rv_param)
                except ValueError:
                    raise errors.BadRequest(f"invalid resource version: {rv_param}") from None
                try:
                    backlog = store.events_since(since)
                except errors.Gone as gone:
                    await response.prepare(request)
                    await response.write(_line({"type": "ERROR", "object": gone.status()}))
                    return response
                for ev in backlog:
                    if ev.resource == resource:
                        queue.put_nowait(ev)
                seen_rv = since
            await response.prepare(request)

            def line(typ: str, obj: dict, raw: bytes | None = None) -> bytes:
                nonlocal first_table
                if as_table and typ != "BOOKMARK" and typ != "ERROR":
                    table = tables.to_table(kind.plural, [obj], resource_version=obj["metadata"]["resourceVersion"],
                                            include_object=include_object, with_columns=first_table,
                                            copy_metadata=False)
                    first_table = False
                    return _line({"type": typ, "object": table})
                if typ in ("ADDED", "MODIFIED", "DELETED"):
                    return self._event_line(typ, obj, raw)
                return _line({"type": typ, "object": obj})

            def event_line(event: WatchEvent) -> bytes | None:
                """What this watcher sends for a store event: nothing, or one line (selector transitions)."""
                nonlocal seen_rv
                if event.rv <= seen_rv:
                    return None
                seen_rv = event.rv
                now_in, was_in = selected(event.object), selected(event.old)
                if event.type == "DELETED":
                    typ = "DELETED" if was_in or now_in else None
                elif event.type == "ADDED":
                    typ = "ADDED" if now_in else None
                elif now_in:
                    typ = "MODIFIED" if was_in else "ADDED"
                else:
                    typ = "DELETED" if was_in else None
                # The stored bytes are the object as the event carries it, whichever type this watcher sees.
                return line(typ, event.object, event.raw) if typ else None

            if initial:
                await response.write(b"".join(line(typ, obj) for typ, obj in initial))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout if timeout else None
            bookmark_every = 60.0
            while True:
                wait = bookmark_every if bookmarks else None
                if deadline is not None:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    wait = min(wait, left) if wait else left
                try:
                    # asyncio.timeout, not wait_for: wait_for wraps every get() in a new Task, a visible cost
                    # when each of a dozen watchers wakes for every write.
                    async with asyncio.timeout(wait):
                        event = await queue.get()
                except TimeoutError:
                    if bookmarks:
                        await response.write(line("BOOKMARK", {"kind": kind.kind, "apiVersion": kind.api_version,
                                                                "metadata": {"resourceVersion": str(seen_rv)}}))
                    continue
                # Send everything queued by now in one write: under a burst of writes this is one chunk (one
                # TLS record, one send) per wake-up instead of one per event. Order is kept.
                out = []
                while event is not None:
                    data = event_line(event)
                    if data is not None:
                        out.append(data)
                    event = queue.get_nowait() if not queue.empty() else None
                if out:
                    await response.write(b"".join(out))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            unsubscribe()
        return response


def _warn(response: web.Response, dropped: list[str] | None) -> web.Response:
    """Add a `Warning: 299 - "unknown field \"spec.foo\""` header per dropped field, as kube-apiserver does."""
    for path in dropped or ():
        text = json.dumps(f'unknown field "{path}"')
        response.headers.add("Warning", f"299 - {text}")
    return response


def _line(obj: dict) -> bytes:
    return orjson.dumps(obj) + b"\n"


def _without_type(obj: dict) -> dict:
    """List items are serialised without apiVersion/kind, as the real server does."""
    return {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}


def unix_socket(path: Path) -> socket.socket:
    """A listening Unix-domain socket at `path`, mode 0600: the local, TLS-free door for the cluster's own components.

    Only root (the owner) can connect, and requests still carry the bearer token the TCP listeners check. Plain
    HTTP here costs no TLS record per response and watch event and skips the loopback TCP stack; users, kubectl and
    the official client keep the HTTPS listener of the kubeconfig.
    """
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # born 0600: no window in which another user could connect
    try:
        sock.bind(str(path))
    finally:
        os.umask(old_umask)
    sock.listen(512)
    sock.setblocking(False)
    return sock


def ssl_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx
