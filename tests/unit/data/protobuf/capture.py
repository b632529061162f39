"""Capture the request bodies real kubectl sends for `kubectl create ...` generators.

A loopback HTTP server (127.0.0.1, ephemeral port) records every request kubectl makes and answers each
POST with 201 and a small JSON object, so kubectl finishes normally.  kubectl 1.32/1.33 send these bodies
as protobuf (`application/vnd.kubernetes.protobuf`), kubectl 1.31 sends JSON: the JSON body is the oracle
for what `labkit.apiserver.protobuf.decode` must return for the protobuf body of the same command.

Regenerate the fixtures next to this file with:

    .venv/bin/python tests/unit/data/protobuf/capture.py

Each fixture `<case>.json` holds the command, the request path, the 1.31 JSON body and the hex-encoded
protobuf bodies of 1.32 and 1.33.  The unit tests only read the fixtures; `capture()` is also used by the
one live test, which runs when kubectl.1.33 is installed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

HERE = Path(__file__).resolve().parent

# case name -> kubectl arguments.  Each command POSTs exactly one object.
COMMANDS: dict[str, list[str]] = {
    "deployment_nginx": ["create", "deployment", "nginx", "--image=nginx:1.19"],
    "deployment_web": ["create", "deployment", "web", "--image=nginx", "--replicas=3", "--port=80"],
    "service_clusterip": ["create", "service", "clusterip", "my-svc", "--tcp=5678:8080"],
    "service_nodeport": ["create", "service", "nodeport", "np", "--tcp=80:8080", "--node-port=30080"],
    "service_externalname": ["create", "service", "externalname", "ext", "--external-name=www.example.net"],
    "service_headless": ["create", "service", "clusterip", "hl", "--clusterip=None"],
    "service_loadbalancer": ["create", "service", "loadbalancer", "lb", "--tcp=80:8080,443:8443"],
    "namespace_lab": ["create", "namespace", "lab"],
    "configmap": ["create", "configmap", "cfg", "--from-literal=a=1", "--from-literal=b=two"],
    "secret_generic": ["create", "secret", "generic", "sec", "--from-literal=password=s3cr3t"],
    "serviceaccount": ["create", "serviceaccount", "robot"],
    "quota": ["create", "quota", "q", "--hard=cpu=1,memory=1Gi,pods=2", "--scopes=BestEffort"],
    "secret_dockerregistry": ["create", "secret", "docker-registry", "reg", "--docker-server=r.example.net",
                              "--docker-username=u", "--docker-password=p"],
    # {tmp} is the capture's temporary directory; BLOB (not UTF-8) is written there as blob.bin.
    "configmap_binary": ["create", "configmap", "bin", "--from-file=blob={tmp}/blob.bin"],
    # batch/v1 Job: a kind decode() does not support (the test expects ProtobufError).
    "job": ["create", "job", "j", "--image=busybox"],
    "deployment_multi": ["create", "deployment", "multi", "--image=nginx", "--image=busybox", "-n", "other"],
}


# Aggregated discovery (apidiscovery.k8s.io/v2) for the few resources these commands touch: `kubectl run`
# and `expose` resolve their resource through discovery, the `create` generators do not.
DISCOVERY_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def _group(name: str, version: str, resources: list[tuple[str, str, str]]) -> dict:
    return {"metadata": {"name": name}, "versions": [{"version": version, "resources": [
        {"resource": res, "responseKind": {"group": name, "version": version, "kind": kind}, "scope": scope,
         "verbs": _VERBS} for res, kind, scope in resources]}]}


DISCOVERY = {
    "/api": {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "items": [_group("", "v1", [
        ("pods", "Pod", "Namespaced"), ("services", "Service", "Namespaced"), ("namespaces", "Namespace", "Cluster"),
        ("configmaps", "ConfigMap", "Namespaced"), ("secrets", "Secret", "Namespaced")])]},
    "/apis": {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "items": [_group(
        "apps", "v1", [("deployments", "Deployment", "Namespaced")])]},
}


BLOB = bytes(range(256))


@dataclass
class Captured:
    """One request kubectl made: method, path with query, Content-Type and raw body."""

    method: str
    path: str
    content_type: str
    body: bytes


def kubectl_binary(version: str) -> str | None:
    """Path of `kubectl.<version>` next to the `kubectl` on PATH (the gcloud SDK layout), or None."""
    found = shutil.which("kubectl")
    if not found:
        return None
    candidate = Path(os.path.realpath(found)).parent / f"kubectl.{version}"
    return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None


async def capture(kubectl: str, args: list[str], timeout: float = 30.0) -> tuple[list[Captured], int, str]:
    """Run `kubectl args` against a recording loopback server; return (requests, returncode, output)."""
    seen: list[Captured] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append(Captured(request.method, request.path_qs, request.headers.get("Content-Type", ""), body))
        if request.method == "POST":
            # Echo JSON bodies; for protobuf a bare object is enough for kubectl to print "... created".
            try:
                obj = json.loads(body)
            except ValueError:
                obj = {"metadata": {"name": "captured"}}
            return web.json_response(obj, status=201)
        if request.method == "GET" and request.path in DISCOVERY:
            return web.Response(body=json.dumps(DISCOVERY[request.path]).encode(),
                                headers={"Content-Type": DISCOVERY_TYPE})
        return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                  "message": "not found", "reason": "NotFound", "code": 404}, status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        with tempfile.TemporaryDirectory(prefix="labkit-pbcap-") as tmp:
            (Path(tmp) / "blob.bin").write_bytes(BLOB)
            args = [arg.replace("{tmp}", tmp) for arg in args]
            kubeconfig = Path(tmp) / "config"
            kubeconfig.write_text(json.dumps({
                "apiVersion": "v1", "kind": "Config", "current-context": "cap",
                "clusters": [{"name": "cap", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "contexts": [{"name": "cap", "context": {"cluster": "cap", "user": "cap"}}],
                "users": [{"name": "cap", "user": {"token": "capture"}}],
            }))
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, "KUBECONFIG": str(kubeconfig)}
            proc = await asyncio.create_subprocess_exec(
                kubectl, "--cache-dir", str(Path(tmp) / "cache"), *args,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env)
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), timeout)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise
            return seen, proc.returncode or 0, out.decode(errors="replace")
    finally:
        await runner.cleanup()


async def capture_post(kubectl: str, args: list[str]) -> Captured:
    """The single POST `kubectl args` makes (raises if there is not exactly one)."""
    seen, _rc, out = await capture(kubectl, args)
    posts = [c for c in seen if c.method == "POST"]
    if len(posts) != 1:
        raise RuntimeError(f"expected one POST from {kubectl} {args}, got {[(c.method, c.path) for c in seen]}: {out}")
    return posts[0]


async def main() -> int:
    """Capture every command with kubectl 1.31 (JSON) and 1.32/1.33 (protobuf); write one fixture per case."""
    binaries = {v: kubectl_binary(v) for v in ("1.31", "1.32", "1.33")}
    missing = [v for v, b in binaries.items() if b is None]
    if missing:
        print(f"kubectl versions not found: {missing}", file=sys.stderr)
        return 1
    for case, args in COMMANDS.items():
        oracle = await capture_post(binaries["1.31"], args)  # type: ignore[arg-type]
        if "json" not in oracle.content_type:
            raise RuntimeError(f"kubectl 1.31 sent {oracle.content_type} for {args}")
        fixture: dict[str, object] = {"args": args, "path": oracle.path, "json": json.loads(oracle.body),
                                      "protobuf": {}}
        for version in ("1.32", "1.33"):
            got = await capture_post(binaries[version], args)  # type: ignore[arg-type]
            if got.content_type != "application/vnd.kubernetes.protobuf":
                raise RuntimeError(f"kubectl {version} sent {got.content_type} for {args}")
            if got.path != oracle.path:
                raise RuntimeError(f"path differs: {got.path} != {oracle.path}")
            fixture["protobuf"][version] = got.body.hex()  # type: ignore[index]
        (HERE / f"{case}.json").write_text(json.dumps(fixture, indent=1, sort_keys=True) + "\n")
        print(f"{case}: {oracle.path} ({len(oracle.body)} bytes JSON)")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
