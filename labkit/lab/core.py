"""`labkit.Lab`: what a notebook uses to start a cluster, act on it and look at what a Service configured.

    lab = Lab.up()                          # start (or reach) the cluster; never a second one
    lab.fresh_namespace("clusterip")        # this lab's own namespace, emptied if a previous run left one
    lab.kubectl("create deploy nginx --image=nginx:1.19")
    lab.wait_for(rollout="deploy/nginx")
    lab.get("pods")                         # DataFrame, kubectl's -o wide columns
    lab.ipvs("nginx")                       # the virtual server(s) of Service nginx, printed as ipvsadm -L -n
    lab.dig("nginx")                        # from inside the cluster
    lab.requests("http://nginx", count=10).plot()

Everything is synchronous and safe inside a running Jupyter kernel: API calls run on a private event loop in a
thread of its own (`portal.Portal`), and the backend (`labkit.backends.base`) is called from worker threads.
"""

from __future__ import annotations

import atexit
import contextlib
import html
import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import pandas as pd

from labkit import errors
from labkit.backends.base import Backend, backend_name, get_backend
from labkit.lab import waiting
from labkit.lab.portal import Portal
from labkit.lab.results import ConnectionTable, EndpointTable, IpvsTable, Output, Requests

if TYPE_CHECKING:
    from labkit.lab.nftables import NftRules

TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
_NS_FLAGS = ("-n", "--namespace", "-A", "--all-namespaces")


class KubectlError(errors.LabkitError):
    """kubectl exited non-zero; the message is kubectl's own."""

    def __init__(self, args: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.args_ = list(args)
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr
        super().__init__((stderr or stdout).strip() or f"kubectl {' '.join(args)} exited {returncode}")


class Lab:
    """One cluster, as a notebook sees it. Make it with `Lab.up()` or `Lab.connect()`."""

    _instances: ClassVar[dict[tuple[str, str], Lab]] = {}

    def __init__(self, backend: Backend, namespace: str = "default") -> None:
        self.backend = backend
        self.namespace = namespace
        self._portal = Portal()
        self._client: Any = None
        atexit.register(self._release)  # close the API client's connections while the portal's loop still runs

    # -- getting a cluster ----------------------------------------------------------------------------------

    @classmethod
    def up(cls, backend: str | Backend | None = None, *, proxy_mode: str | None = None,
           namespace: str | None = None, timeout: float = 180.0, **options: Any) -> Lab:
        """Start the cluster unless it runs (backend: argument, else $LABKIT_BACKEND, else embedded) and wait
        until it is usable. Running this cell again returns the same Lab; it never makes a second cluster."""
        lab = cls._for(backend, options)
        lab._portal.run_blocking(lambda: lab.backend.start(proxy_mode=proxy_mode, timeout=timeout))
        if namespace:
            lab.namespace = lab.backend.namespace(namespace)
        return lab

    @classmethod
    def connect(cls, backend: str | Backend | None = None, *, namespace: str | None = None,
                timeout: float = 60.0, **options: Any) -> Lab:
        """Reach a cluster that already runs (`labkit up`); ClusterNotRunning if none does."""
        lab = cls._for(backend, options)
        lab._portal.run_blocking(lambda: lab.backend.connect(timeout=timeout))
        if namespace:
            lab.namespace = lab.backend.namespace(namespace)
        return lab

    @classmethod
    def _for(cls, backend: str | Backend | None, options: dict[str, Any]) -> Lab:
        chosen = backend if isinstance(backend, Backend) else get_backend(backend_name(backend), **options)
        key = (chosen.name, str(chosen.kubeconfig))
        lab = cls._instances.get(key)
        if lab is None:
            lab = cls._instances[key] = cls(chosen)
        return lab

    def down(self) -> None:
        """Delete the cluster and everything in it."""
        self._close_client()
        self._portal.run_blocking(self.backend.stop)
        self._instances.pop((self.backend.name, str(self.backend.kubeconfig)), None)

    def state(self) -> list[tuple[str, str]]:
        """What the lab's first cell shows: which cluster this is and how it is doing, read live — the API server
        and its version, the kubeconfig, kube-proxy's mode, each node's readiness, the cluster DNS's endpoints."""
        info = self._portal.run_blocking(self.backend.describe)
        version = self._api("request", "GET", "/version").get("gitVersion", "?")
        nodes = [f"{n['metadata']['name']} {_ready(n)}" for n in self.resources("nodes")]
        dns_ready = self.endpoints("kube-dns", namespace="kube-system").addresses(ready=True)
        dns_ip = self.resource("service", "kube-dns", "kube-system")["spec"].get("clusterIP")
        return [("cluster", f"{info.backend}, running"), ("API server", f"{info.server} (Kubernetes {version})"),
                ("kubeconfig", str(info.kubeconfig)), ("proxy mode", info.proxy_mode),
                ("nodes", ", ".join(nodes) or "none"),
                ("cluster DNS", f"kube-dns {dns_ip}, {len(dns_ready)} ready endpoint(s)"),
                ("namespace", self.namespace), *info.details]

    def _state_or_error(self) -> list[tuple[str, str]]:
        try:
            return self.state()
        except Exception as exc:  # a repr must not raise: say what went wrong instead
            return [("cluster", f"{self.backend.name}, not reachable ({exc}) — is it up? `labkit status`"),
                    ("kubeconfig", str(self.backend.kubeconfig)), ("namespace", self.namespace)]

    def __repr__(self) -> str:
        rows = self._state_or_error()
        width = max(len(k) for k, _ in rows)
        return "Lab\n" + "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)

    def _repr_html_(self) -> str:
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>"
                       f"{html.escape(str(v))}</td></tr>" for k, v in self._state_or_error())
        return f"<table><caption style='text-align:left'><b>Lab</b></caption>{body}</table>"

    # -- namespaces -----------------------------------------------------------------------------------------

    def fresh_namespace(self, name: str, *, use: bool = True, timeout: float = 120.0) -> str:
        """Create namespace `name`, empty (one left by an earlier run is deleted first), and make it this lab's
        namespace unless `use=False`. Returns the name (a shared cluster's backend may prefix it)."""
        ns = self.backend.namespace(name)
        if self._api("get", "namespaces", ns, missing_ok=True) is not None:
            self.kubectl(["delete", "namespace", ns, "--wait=false"], namespace=None)
            self.wait_for(lambda: self._api("get", "namespaces", ns, missing_ok=True) is None,
                          what=f"namespace {ns} from an earlier run to be deleted", timeout=timeout)
        self.kubectl(["create", "namespace", ns], namespace=None)
        if use:
            self.namespace = ns
        return ns

    def delete_namespace(self, name: str | None = None) -> None:
        """Delete this lab's namespace (or `name`) and everything in it, without waiting for its pods to stop."""
        ns = name or self.namespace
        self.kubectl(["delete", "namespace", ns, "--wait=false", "--ignore-not-found"], namespace=None)

    # -- kubectl --------------------------------------------------------------------------------------------

    def kubectl(self, args: str | Sequence[str], *, input: str | None = None, namespace: str | bool | None = True,
                check: bool = True, timeout: float = 120.0) -> Output:
        """Run the real kubectl against the lab (in the lab's namespace unless `args` name one) and return its
        output; a failure raises KubectlError with kubectl's own message."""
        argv = shlex.split(args) if isinstance(args, str) else list(args)
        ns_args: list[str] = []
        if namespace is not None and namespace is not False and not any(
                a in _NS_FLAGS or a.startswith("--namespace=") for a in argv):
            ns_args = ["--namespace", self.namespace if namespace is True else str(namespace)]
        cmd = ["kubectl", *self.backend.kubectl_args(), *ns_args, *argv]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise KubectlError(argv, proc.returncode, proc.stdout, proc.stderr)
        return Output(proc.stdout + (proc.stderr if proc.returncode != 0 else ""))

    def apply(self, manifest: str) -> Output:
        """`kubectl apply -f -` with this YAML (in the lab's namespace unless the objects name one)."""
        return self.kubectl(["apply", "-f", "-"], input=manifest)

    def delete(self, args: str | Sequence[str]) -> Output:
        """`kubectl delete ARGS` (e.g. "pod web-0", "svc nginx")."""
        argv = shlex.split(args) if isinstance(args, str) else list(args)
        return self.kubectl(["delete", *argv])

    def exec(self, pod: str, command: str | Sequence[str], *, container: str | None = None) -> Output:
        """`kubectl exec POD -- COMMAND` and its output."""
        argv = shlex.split(command) if isinstance(command, str) else list(command)
        return self.kubectl(["exec", pod, *(["-c", container] if container else []), "--", *argv])

    def logs(self, pod: str, *, container: str | None = None, tail: int | None = None) -> Output:
        """`kubectl logs POD`."""
        return self.kubectl(["logs", pod, *(["-c", container] if container else []),
                             *([f"--tail={tail}"] if tail is not None else [])])

    # -- the API --------------------------------------------------------------------------------------------

    def _api(self, verb: str, *args: Any, missing_ok: bool = False, **kwargs: Any) -> Any:
        async def call() -> Any:
            if self._client is None:
                from labkit.client import Client

                self._client = Client.from_kubeconfig(self.backend.kubeconfig, user_agent="labkit-lab")
            return await getattr(self._client, verb)(*args, **kwargs)

        try:
            return self._portal.call(call())
        except errors.NotFound:
            if missing_ok:
                return None
            raise

    def _close_client(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            self._portal.call(client.close(), timeout=5)

    def _release(self) -> None:
        with contextlib.suppress(Exception):
            self._close_client()

    def resource(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        """One object as the API returns it (a dict): `lab.resource("svc", "nginx")["spec"]["clusterIP"]`."""
        from labkit import kinds

        k = kinds.lookup(kind)
        return self._api("get", k, name, (namespace or self.namespace) if k.namespaced else None)

    def resources(self, kind: str, *, namespace: str | None = None, selector: str | None = None,
                  all_namespaces: bool = False) -> list[dict[str, Any]]:
        """Objects of a kind (dicts), optionally by label selector."""
        from labkit import kinds

        k = kinds.lookup(kind)
        ns = None if all_namespaces or not k.namespaced else (namespace or self.namespace)
        items, _ = self._api("list", k, ns, label_selector=selector)
        return items

    def pods(self, selector: str | None = None, *, namespace: str | None = None) -> list[dict[str, Any]]:
        """The pods (dicts) that are not being deleted, by name: what a Deployment or StatefulSet now runs."""
        items = [p for p in self.resources("pods", namespace=namespace, selector=selector)
                 if not p["metadata"].get("deletionTimestamp")]
        return sorted(items, key=lambda p: p["metadata"]["name"])

    def get(self, kind: str, name: str | None = None, *, namespace: str | None = None, selector: str | None = None,
            all_namespaces: bool = False) -> pd.DataFrame:
        """`kubectl get KIND [NAME] -o wide` as a DataFrame: the columns the API server's Table gives kubectl."""
        from labkit import kinds

        k = kinds.lookup(kind)
        ns = None if all_namespaces or not k.namespaced else (namespace or self.namespace)
        params = {"labelSelector": selector} if selector else None
        table = self._api("request", "GET", k.path(ns, name), params=params, accept=TABLE_ACCEPT)
        columns = [c["name"].upper() for c in table.get("columnDefinitions", [])]
        rows = []
        for row in table.get("rows", []):
            cells = list(row.get("cells", []))
            if all_namespaces and k.namespaced:
                meta = (row.get("object") or {}).get("metadata") or {}
                cells = [meta.get("namespace", ""), *cells]
            rows.append(cells)
        if all_namespaces and k.namespaced:
            columns = ["NAMESPACE", *columns]
        return pd.DataFrame(rows, columns=columns)

    def events(self, *, namespace: str | None = None) -> pd.DataFrame:
        """`kubectl get events` for the lab's namespace (LAST SEEN, TYPE, REASON, OBJECT, MESSAGE)."""
        return self.get("events", namespace=namespace)

    def endpoints(self, service: str, *, namespace: str | None = None) -> EndpointTable:
        """The Service's endpoints as both its Endpoints object and its EndpointSlices list them: one row per
        address, with its ready/serving/terminating conditions and the pod behind it."""
        ns = namespace or self.namespace
        rows: list[dict[str, Any]] = []
        ep = self._api("get", "endpoints", service, ns, missing_ok=True)
        for subset in (ep or {}).get("subsets") or []:
            ports = ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in subset.get("ports") or [])
            for key, ready in (("addresses", True), ("notReadyAddresses", False)):
                for a in subset.get(key) or []:
                    rows.append({"object": f"Endpoints/{service}", "address": a["ip"], "ports": ports,
                                 "ready": ready, "serving": None, "terminating": None,
                                 "pod": (a.get("targetRef") or {}).get("name"), "hostname": a.get("hostname"),
                                 "node": a.get("nodeName")})
        slices, _ = self._api("list", "endpointslices", ns, label_selector=f"kubernetes.io/service-name={service}")
        for s in sorted(slices, key=lambda s: s["metadata"]["name"]):
            ports = ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in s.get("ports") or [])
            for e in s.get("endpoints") or []:
                cond = e.get("conditions") or {}
                for address in e.get("addresses") or []:
                    rows.append({"object": f"EndpointSlice/{s['metadata']['name']}", "address": address,
                                 "ports": ports, "ready": cond.get("ready") is not False,
                                 "serving": cond.get("serving", cond.get("ready")) is not False,
                                 "terminating": bool(cond.get("terminating", False)),
                                 "pod": (e.get("targetRef") or {}).get("name"), "hostname": e.get("hostname"),
                                 "node": e.get("nodeName")})
        from labkit.lab.results import ENDPOINT_COLUMNS

        return EndpointTable(rows, columns=ENDPOINT_COLUMNS)

    # -- the load balancer ----------------------------------------------------------------------------------

    def service_addresses(self, service: str, *, namespace: str | None = None) -> list[tuple[str, str, int]]:
        """The (protocol, address, port) virtual servers kube-proxy makes for a Service: its cluster IPs, external
        IPs and load-balancer IPs on each port, and each NodePort on every node address."""
        svc = self.resource("svc", service, namespace)
        spec, status = svc.get("spec") or {}, svc.get("status") or {}
        ips = [ip for ip in (spec.get("clusterIPs") or [spec.get("clusterIP")]) if ip and ip != "None"]
        ips += spec.get("externalIPs") or []
        ips += [i["ip"] for i in (status.get("loadBalancer") or {}).get("ingress") or [] if i.get("ip")]
        out = [(p.get("protocol", "TCP"), ip, int(p["port"])) for ip in ips for p in spec.get("ports") or []]
        node_ports = [(p.get("protocol", "TCP"), int(p["nodePort"])) for p in spec.get("ports") or []
                      if p.get("nodePort")]
        if node_ports:
            for node in self.resources("nodes"):
                for a in (node.get("status") or {}).get("addresses") or []:
                    if a.get("type") in ("InternalIP", "ExternalIP"):
                        out += [(proto, a["address"], port) for proto, port in node_ports]
        return out

    def ipvs(self, service: str | None = None, *, connections: bool = False,
             namespace: str | None = None) -> IpvsTable | ConnectionTable:
        """The IPVS table (`ipvsadm -L -n`), or with `connections=True` its connection table (`ipvsadm -L -n -c`);
        with `service`, only the virtual servers that Service made."""
        keys = None
        if service is not None:
            keys = {f"{a}:{p}" if ":" not in a else f"[{a}]:{p}" for _, a, p in
                    self.service_addresses(service, namespace=namespace)}
        if connections:
            conns = self._portal.run_blocking(self.backend.ipvs_connections)
            table = ConnectionTable.from_model(conns)
            return table if keys is None else table[table["virtual"].isin(keys)]
        vss = self._portal.run_blocking(self.backend.ipvs_table)
        if keys is not None:
            vss = [vs for vs in vss if (f"{vs.address}:{vs.port}" if ":" not in vs.address
                                        else f"[{vs.address}]:{vs.port}") in keys]
        return IpvsTable.from_model(vss)

    def nft(self, service: str | None = None, *, namespace: str | None = None) -> NftRules:
        """kube-proxy's nftables rules (`nft list table ip kube-proxy` on the node) in a cluster running nftables
        mode; with `service`, only the chains, sets and map elements that Service made, beside the IPVS virtual
        servers the same desired state gives in IPVS mode (`.ipvs`)."""
        from labkit.agent.desired import render_ipvs, service_ports
        from labkit.lab.nftables import NftRules

        rules = NftRules.parse(self._portal.run_blocking(lambda: self.backend.nft(["list", "table", "ip",
                                                                                  "kube-proxy"])))
        if service is None:
            return rules
        ns = namespace or self.namespace
        svc = self.resource("service", service, ns)
        spec = svc.get("spec") or {}
        cluster_ips = [ip for ip in (spec.get("clusterIPs") or [spec.get("clusterIP")]) if ip and ip != "None"]
        one = rules.only(ns, service, cluster_ips)
        # the same Service as the IPVS proxier renders it, from the objects the agent reads
        slices = self.resources("endpointslices", namespace=ns, selector=f"kubernetes.io/service-name={service}")
        nodes = self.resources("nodes")
        node = nodes[0]["metadata"]["name"] if nodes else ""
        node_ips = [a["address"] for n in nodes[:1] for a in (n.get("status") or {}).get("addresses") or []
                    if a.get("type") == "InternalIP"]
        one.ipvs = IpvsTable.from_model(render_ipvs(service_ports(svc, slices, node), node_ips).table.values())
        return one

    # -- DNS and HTTP from inside the cluster ---------------------------------------------------------------

    def dig(self, name: str, rdtype: str = "A", *, from_pod: str | None = None, namespace: str | None = None,
            **options: Any) -> Any:
        """Ask the cluster DNS like `dig NAME TYPE` run in pod `from_pod` (default: the node, resolving as a pod
        of the lab's namespace). Options: server, tcp, edns, ignore, rd, timeout."""
        from labkit.dns.dig import dig

        transport = self._portal.run_blocking(lambda: self.backend.dns_transport(from_pod, namespace or self.namespace))
        return dig(name, rdtype, transport=transport, **options)

    def resolve(self, name: str, rdtype: str = "A", *, from_pod: str | None = None,
                namespace: str | None = None) -> Any:
        """Resolve `name` as a program in `from_pod` would (glibc: search list, ndots): every name tried."""
        from labkit.dns.dig import resolve

        transport = self._portal.run_blocking(lambda: self.backend.dns_transport(from_pod, namespace or self.namespace))
        return resolve(name, rdtype, transport=transport)

    def open_connection(self, url: str, *, from_pod: str | None = None, namespace: str | None = None,
                        timeout: float = 3.0) -> Any:
        """An HTTP/1.1 connection kept open (from `from_pod`, else the node): `.request()` sends a GET on it,
        `.destination` is where the load balancer sent it, `.close()` ends it."""
        host, port, target = _split_url(url)
        conn = self.backend.http_connection(host, port, from_pod=from_pod, namespace=namespace or self.namespace,
                                            timeout=timeout)
        conn.target = target
        return conn

    def requests(self, url: str, *, from_pod: str | None = None, count: int = 10, keepalive: bool = False,
                 namespace: str | None = None, timeout: float = 3.0) -> Requests:
        """`count` HTTP GETs from inside the cluster, each on a fresh connection (or all on one kept-alive
        connection), and which pod answered each."""
        from labkit.agent.cli import http_requests, pod_index, who_answered

        host, port, target = _split_url(url)
        ns = namespace or self.namespace

        def open_connection() -> Any:  # a fresh connection, the name resolved again as curl would
            return self.backend.http_connection(host, port, from_pod=from_pod, namespace=ns, timeout=timeout)

        replies = http_requests(open_connection, target, count, keepalive=keepalive)
        index = pod_index(self.resources("pods", all_namespaces=True))
        rows = []
        for r in replies:
            pod = who_answered(r, index, target) if r.error is None else None
            rows.append({"pod": pod, "status": r.status,
                         "destination": f"{r.destination[0]}:{r.destination[1]}" if r.destination else None,
                         "ms": round(r.ms, 2), "error": r.error})
        from labkit.lab.results import REQUEST_COLUMNS

        return Requests(rows, columns=REQUEST_COLUMNS)

    # -- waiting --------------------------------------------------------------------------------------------

    def wait_for(self, condition: Callable[[], Any] | None = None, *, rollout: str | None = None,
                 pods: str | None = None, endpoints: str | None = None, dns: str | None = None,
                 ipvs: str | None = None, count: int | None = None, from_pod: str | None = None,
                 what: str | None = None, timeout: float = 60.0, namespace: str | None = None) -> Any:
        """Wait until a condition holds (never a fixed sleep); the timeout's error says what was last seen.

        One of: `condition` (a callable; truthy ends the wait), `rollout="deploy/nginx"` (or a statefulset),
        `pods="app=nginx"` (`count` of them, all Ready), `endpoints="nginx"` (`count` ready addresses in its
        EndpointSlices), `dns="nginx"` (the name resolves, to `count` addresses if given, from `from_pod`),
        `ipvs="nginx"` (each of the Service's virtual servers has `count` real servers with weight > 0).
        Returns a `Waited` (what was seen, how long it took; `.value`: what the condition returned).
        """
        ns = namespace or self.namespace
        check = waiting.condition_for(self, ns, condition=condition, rollout=rollout, pods=pods, endpoints=endpoints,
                                      dns=dns, ipvs=ipvs, count=count, from_pod=from_pod, what=what)
        return waiting.wait(check, timeout)

    # -- pictures -------------------------------------------------------------------------------------------

    def diagram(self, service: str, *, namespace: str | None = None) -> Any:
        """The Service as what it configures, drawn from the live objects: DNS names → records → virtual
        servers → real servers → pods (with addresses and readiness), as an offline SVG."""
        from labkit.lab.diagram import service_diagram

        return service_diagram(self, service, namespace or self.namespace)

    def timeline(self, service: str, *, traffic: str | None = None, from_pod: str | None = None,
                 namespace: str | None = None) -> Any:
        """A recorder (use it in a `with` block) of the Service's EndpointSlice conditions and IPVS real servers
        over time, optionally sending requests to `traffic` (a URL) the whole while; `.plot()` afterwards."""
        from labkit.lab.timeline import Timeline

        return Timeline(self, service, namespace or self.namespace, traffic=traffic, from_pod=from_pod)

    def close(self) -> None:
        """Release this Lab's connections (the cluster keeps running)."""
        self._close_client()
        self._portal.close()
        self._instances.pop((self.backend.name, str(self.backend.kubeconfig)), None)


def _ready(node: dict[str, Any]) -> str:
    conditions = {c.get("type"): c.get("status") for c in (node.get("status") or {}).get("conditions") or []}
    return "Ready" if conditions.get("Ready") == "True" else "NotReady"


def _split_url(url: str) -> tuple[str, int, str]:
    u = urlsplit(url if "://" in url else "http://" + url)
    if u.scheme != "http":
        raise errors.LabkitError(f"only http:// URLs: {url}")
    target = (u.path or "/") + (f"?{u.query}" if u.query else "")
    return u.hostname or "", u.port or 80, target


def _now() -> float:
    return time.monotonic()
