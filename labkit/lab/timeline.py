"""`Lab.timeline(service)`: record a Service's EndpointSlice conditions and IPVS real servers while something
happens (a rolling update, a pod deleted), optionally with requests sent the whole time, then plot it.

    with lab.timeline("web", traffic="http://web/hostname", from_pod="client") as tl:
        lab.kubectl("rollout restart deployment/web")
        lab.wait_for(rollout="deployment/web")
    tl.plot()

Two threads sample while the block runs: one reads the EndpointSlices and the load balancer's table every
`interval` seconds and keeps each change; one sends a request on a fresh connection after another.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import pandas as pd

from labkit.lab.results import Plot, new_figure

if TYPE_CHECKING:
    from labkit.lab.core import Lab

STATE_COLORS = {"ready": "#2ca02c", "terminating (serving)": "#ff7f0e", "not ready": "#bbbbbb",
                "terminating": "#d62728"}


def endpoint_state(ready: bool, serving: bool, terminating: bool) -> str:
    if ready:
        return "ready"
    if terminating:
        return "terminating (serving)" if serving else "terminating"
    return "not ready"


class Timeline:
    """A recorder; use it as a context manager, then read `.endpoints`, `.ipvs`, `.requests` or `.plot()`."""

    def __init__(self, lab: Lab, service: str, namespace: str, *, traffic: str | None = None,
                 from_pod: str | None = None, interval: float = 0.1) -> None:
        self.lab, self.service, self.namespace = lab, service, namespace
        self.traffic, self.from_pod, self.interval = traffic, from_pod, interval
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._t0 = 0.0
        self._endpoints: list[dict[str, Any]] = []
        self._ipvs: list[dict[str, Any]] = []
        self._requests: list[dict[str, Any]] = []
        self._pods: dict[str, str] = {}
        self.sampling_errors: list[str] = []

    def __enter__(self) -> Timeline:
        self._t0 = time.monotonic()
        self._virtuals = {f"{a}:{p}" for _, a, p in self.lab.service_addresses(self.service,
                                                                                 namespace=self.namespace)}
        self._sample()
        self._threads = [threading.Thread(target=self._sampler, daemon=True, name="labkit-timeline")]
        if self.traffic:
            self._threads.append(threading.Thread(target=self._sender, daemon=True, name="labkit-traffic"))
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)
        self._sample()

    # -- sampling -------------------------------------------------------------------------------------------

    def _now(self) -> float:
        return round(time.monotonic() - self._t0, 3)

    def _sampler(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._sample()
            except Exception as exc:  # keep sampling; say what went wrong afterwards
                self.sampling_errors.append(f"{type(exc).__name__}: {exc}")

    def _sample(self) -> None:
        t = self._now()
        slices = self.lab.resources("endpointslices", namespace=self.namespace,
                                    selector=f"kubernetes.io/service-name={self.service}")
        states: dict[str, str] = {}
        for s in slices:
            for e in s.get("endpoints") or []:
                c = e.get("conditions") or {}
                ready = c.get("ready") is not False
                state = endpoint_state(ready, c.get("serving", ready) is not False, bool(c.get("terminating")))
                for address in e.get("addresses") or []:
                    states[address] = state
                    self._pods.setdefault(address, (e.get("targetRef") or {}).get("name") or address)
        self._record(self._endpoints, t, states, "state")
        table = self.lab.ipvs(self.service, namespace=self.namespace)
        weights: dict[str, str] = {}
        for row in table[table["virtual"].isin(self._virtuals)].itertuples(index=False):
            if isinstance(row.real_server, str):
                weights[row.real_server.rsplit(":", 1)[0]] = str(int(row.weight))
        self._record(self._ipvs, t, weights, "weight")

    @staticmethod
    def _record(log: list[dict[str, Any]], t: float, now: dict[str, str], field: str) -> None:
        last: dict[str, str] = {}
        for row in log:
            last[row["address"]] = row[field]
        for address, value in now.items():
            if last.get(address) != value:
                log.append({"t": t, "address": address, field: value})
        for address, value in last.items():
            if value != "gone" and address not in now:
                log.append({"t": t, "address": address, field: "gone"})

    def _sender(self) -> None:
        from labkit.agent.cli import http_requests, pod_index, who_answered
        from labkit.lab.core import _split_url

        assert self.traffic is not None
        host, port, target = _split_url(self.traffic)
        index = pod_index(self.lab.resources("pods", namespace=self.namespace))
        while not self._stop.is_set():
            t = self._now()

            def open_connection() -> Any:
                return self.lab.backend.http_connection(host, port, from_pod=self.from_pod,
                                                        namespace=self.namespace, timeout=3.0)

            for r in http_requests(open_connection, target, 1):
                ok = r.error is None and r.status is not None and r.status < 500
                if r.error is None and r.body.strip() not in index.names:
                    index = pod_index(self.lab.resources("pods", namespace=self.namespace))
                pod = who_answered(r, index, target) if r.error is None else None
                self._requests.append({"t": t, "ok": ok, "pod": pod, "status": r.status, "error": r.error})

    # -- results --------------------------------------------------------------------------------------------

    def _pod(self, address: str) -> str:
        return self._pods.get(address, address)

    @property
    def endpoints(self) -> pd.DataFrame:
        """Each change of an endpoint's state: t (seconds from the start), address, pod, state."""
        df = pd.DataFrame(self._endpoints, columns=["t", "address", "state"])
        df.insert(2, "pod", [self._pod(a) for a in df["address"]])
        return df

    @property
    def ipvs(self) -> pd.DataFrame:
        """Each change of a real server: t, address, pod, weight ("gone" once it left the table)."""
        df = pd.DataFrame(self._ipvs, columns=["t", "address", "weight"])
        df.insert(2, "pod", [self._pod(a) for a in df["address"]])
        return df

    @property
    def requests(self) -> pd.DataFrame:
        return pd.DataFrame(self._requests, columns=["t", "ok", "pod", "status", "error"])

    @property
    def errors(self) -> list[str]:
        return [f"t={r['t']}: {r['error'] or r['status']}" for r in self._requests if not r["ok"]]

    def states_seen(self, address: str) -> list[str]:
        """The states an endpoint went through, in order."""
        return [r["state"] for r in self._endpoints if r["address"] == address]

    def __repr__(self) -> str:
        n = len(self._requests)
        return (f"<timeline of Service {self.service}: {len(self._endpoints)} endpoint changes, "
                f"{len(self._ipvs)} real-server changes, {n} requests, {len(self.errors)} failed>")

    def plot(self, title: str | None = None) -> Plot:
        """One row per endpoint: its EndpointSlice state over time (colour) and, drawn over it, whether the load
        balancer sends it new connections (solid: weight > 0; dotted: weight 0, draining). Requests below."""
        end = self._now() if not self._stop.is_set() else max(
            [r["t"] for r in self._endpoints + self._ipvs + self._requests] + [0.1])
        addresses = list(dict.fromkeys(r["address"] for r in self._endpoints))
        fig = new_figure(width=9, height=1.2 + 0.45 * (len(addresses) + (1 if self._requests else 0)))
        ax = fig.subplots()
        for y, address in enumerate(addresses):
            self._bars(ax, y, [r for r in self._endpoints if r["address"] == address], "state", end)
            self._lines(ax, y, [r for r in self._ipvs if r["address"] == address], end)
        labels = [f"{self._pod(a)}\n{a}" for a in addresses]
        if self._requests:
            y = len(addresses)
            for r in self._requests:
                ax.plot([r["t"]], [y], marker="|", markersize=9, color="#2ca02c" if r["ok"] else "#d62728")
            labels.append(f"requests ({len(self.errors)} failed)")
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_ylim(-0.7, len(labels) - 0.3)
        ax.invert_yaxis()
        ax.set_xlabel("seconds")
        for state, color in STATE_COLORS.items():  # legend entries (empty bars)
            ax.barh([0], [0], color=color, label=f"endpoint {state}")
        ax.plot([], [], color="black", lw=1.5, label="real server, weight > 0")
        ax.plot([], [], color="black", lw=1.5, ls=":", label="real server, weight 0")
        ax.set_title(title or f"Service {self.service}: EndpointSlice conditions and IPVS real servers")
        fig.legend(loc="lower center", ncol=3, fontsize=7)
        fig.tight_layout(rect=(0, 0.8 / fig.get_figheight(), 1, 1))
        return Plot(fig, self.endpoints.to_string(index=False))

    @staticmethod
    def _spans(rows: list[dict[str, Any]], field: str, end: float) -> list[tuple[float, float, str]]:
        spans = []
        for i, r in enumerate(rows):
            stop = rows[i + 1]["t"] if i + 1 < len(rows) else end
            if r[field] != "gone":
                spans.append((r["t"], max(stop - r["t"], 0.02), r[field]))
        return spans

    def _bars(self, ax: Any, y: int, rows: list[dict[str, Any]], field: str, end: float) -> None:
        for start, width, state in self._spans(rows, field, end):
            ax.barh(y, width, left=start, height=0.6, color=STATE_COLORS.get(state, "#999999"))

    def _lines(self, ax: Any, y: int, rows: list[dict[str, Any]], end: float) -> None:
        for start, width, weight in self._spans(rows, "weight", end):
            ax.plot([start, start + width], [y, y], color="black", lw=1.5, ls="-" if weight != "0" else ":")
