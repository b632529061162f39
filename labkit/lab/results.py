"""What `Lab` methods return: each renders as an HTML table in JupyterLab and as plain text in logs and handouts.

Tables are pandas DataFrames (filter them, compare them, count them) whose plain-text form is what the familiar
tool prints: `IpvsTable` prints as `ipvsadm -L -n`, `ConnectionTable` as `ipvsadm -L -n -c`. The text is rebuilt
from the rows, so a filtered table still prints as the tool would print those rows.
"""

from __future__ import annotations

import html
import io
from collections import Counter
from collections.abc import Iterable
from typing import Any

import pandas as pd

from labkit.agent.ipvsadm import render_connections, render_list
from labkit.agent.model import FLAG_PERSISTENT, Connection, RealServer, VirtualServer


class Output(str):
    """A command's output: a string that shows as itself (no quotes, real line breaks) in a notebook."""

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(self)}</pre>"


def _hp(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _split_hp(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class TextFrame(pd.DataFrame):
    """A DataFrame whose plain text is a tool's own format (`_text`); HTML stays pandas' table."""

    @property
    def _constructor(self) -> type[pd.DataFrame]:
        return type(self)

    def _text(self) -> str:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __str__(self) -> str:
        try:
            return self._text()
        except (KeyError, ValueError, TypeError, AttributeError):
            return super().__str__()  # columns dropped or renamed: plain pandas text

    def __repr__(self) -> str:
        return self.__str__()

    def _repr_html_(self) -> str | None:
        table = pd.DataFrame(self)._repr_html_() or ""
        return f"{table}<details><summary>as text</summary><pre>{html.escape(str(self))}</pre></details>"


IPVS_COLUMNS = ["protocol", "virtual", "scheduler", "persistent", "real_server", "forward", "weight", "active",
                "inactive"]


class IpvsTable(TextFrame):
    """The load balancer's table, one row per real server (a virtual server without any: one row, no real
    server); prints exactly as `ipvsadm -L -n`."""

    @classmethod
    def from_model(cls, vss: Iterable[VirtualServer]) -> IpvsTable:
        rows: list[dict[str, Any]] = []
        for vs in vss:
            common = {"protocol": vs.protocol, "virtual": _hp(vs.address, vs.port), "scheduler": vs.scheduler,
                      "persistent": vs.timeout if vs.flags & FLAG_PERSISTENT else None}
            for d in sorted(vs.destinations, key=RealServer.sort_key) or [None]:
                rows.append({**common, "real_server": _hp(d.address, d.port) if d else None,
                             "forward": d.forward if d else None, "weight": d.weight if d else None,
                             "active": d.active if d else None, "inactive": d.inactive if d else None})
        frame = cls(rows, columns=IPVS_COLUMNS)
        for col in ("persistent", "weight", "active", "inactive"):
            frame[col] = frame[col].astype("Int64")
        return frame

    def to_model(self) -> list[VirtualServer]:
        vss: dict[tuple[str, str], VirtualServer] = {}
        for row in self.itertuples(index=False):
            key = (row.protocol, row.virtual)
            vs = vss.get(key)
            if vs is None:
                address, port = _split_hp(row.virtual)
                persistent = None if pd.isna(row.persistent) else int(row.persistent)
                vs = vss[key] = VirtualServer(row.protocol, address, port, row.scheduler,
                                              FLAG_PERSISTENT if persistent is not None else 0, persistent or 0)
            if isinstance(row.real_server, str):
                address, port = _split_hp(row.real_server)
                vs.destinations.append(RealServer(address, port, int(row.weight), row.forward, int(row.active),
                                                  int(row.inactive)))
        return list(vss.values())

    def _text(self) -> str:
        return render_list(self.to_model())

    def virtual_servers(self) -> list[str]:
        """The virtual servers listed ("10.96.0.10:53"), in ipvsadm's order, each once."""
        return list(dict.fromkeys(self["virtual"]))

    def real_servers(self, virtual: str | None = None, *, weighted: bool = False) -> list[str]:
        """The real servers ("10.244.0.5:80") of `virtual` (default: all), sorted; `weighted`: only those with a
        weight above 0 (the ones that get new connections)."""
        rows = self if virtual is None else self[self["virtual"] == virtual]
        if weighted:
            rows = rows[rows["weight"].fillna(0) > 0]
        return sorted({rs for rs in rows["real_server"] if isinstance(rs, str)}, key=_sort_key)


def _sort_key(hp: str) -> tuple[int, ...]:
    import ipaddress

    address, port = _split_hp(hp)
    return (int(ipaddress.ip_address(address)), port)


CONNECTION_COLUMNS = ["protocol", "expires", "state", "source", "virtual", "destination"]


class ConnectionTable(TextFrame):
    """The load balancer's connection table; prints exactly as `ipvsadm -L -n -c`."""

    @classmethod
    def from_model(cls, conns: Iterable[Connection]) -> ConnectionTable:
        rows = [{"protocol": c.protocol, "expires": c.expires, "state": c.state, "source": _hp(*c.source),
                 "virtual": _hp(*c.virtual), "destination": _hp(*c.destination)} for c in conns]
        return cls(rows, columns=CONNECTION_COLUMNS)

    def _text(self) -> str:
        return render_connections([
            Connection(r.protocol, _split_hp(r.source), _split_hp(r.virtual), _split_hp(r.destination), r.state,
                       int(r.expires)) for r in self.itertuples(index=False)])


ENDPOINT_COLUMNS = ["object", "address", "ports", "ready", "serving", "terminating", "pod", "hostname", "node"]


class EndpointTable(TextFrame):
    """A Service's endpoints as the Endpoints object and its EndpointSlices list them, one row per address."""

    def _text(self) -> str:
        width = {c: max([len(c)] + [len(_cell(v)) for v in self[c]]) for c in ENDPOINT_COLUMNS}
        lines = ["   ".join(c.upper().ljust(width[c]) for c in ENDPOINT_COLUMNS).rstrip()]
        for row in self[ENDPOINT_COLUMNS].itertuples(index=False):
            lines.append("   ".join(_cell(v).ljust(width[c]) for c, v in zip(ENDPOINT_COLUMNS, row, strict=True))
                         .rstrip())
        return "\n".join(lines)

    def addresses(self, *, ready: bool | None = True, source: str = "EndpointSlice") -> list[str]:
        """The addresses `source` ("EndpointSlice" or "Endpoints") lists, sorted; `ready=True`: only ready ones,
        False: only not-ready ones, None: all."""
        rows = self[self["object"].str.startswith(source + "/")]
        if ready is not None:
            rows = rows[rows["ready"] == ready]
        return sorted(set(rows["address"]), key=lambda a: tuple(int(x) for x in a.split(".")) if "." in a else (0,))


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return "<none>"
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


REQUEST_COLUMNS = ["pod", "status", "destination", "ms", "error"]


class Requests(TextFrame):
    """HTTP requests sent from inside the cluster: which pod answered each."""

    def _text(self) -> str:
        counts = self.counts()
        width = max([len(str(k)) for k in counts.index] + [3])
        lines = [f"{pod:<{width}}  {n}" for pod, n in counts.items()]
        failed = self[self["error"].notna()]
        if len(failed):
            lines.append(f"{len(failed)} of {len(self)} requests failed: {failed['error'].iloc[0]}")
        return "\n".join(lines) if lines else "(no requests)"

    def counts(self) -> pd.Series:
        """Answers per pod, sorted by pod name (failed requests are not counted)."""
        c = Counter(p for p in self["pod"] if isinstance(p, str))
        return pd.Series(dict(sorted(c.items())), name="answers", dtype="int64")

    @property
    def errors(self) -> list[str]:
        return [e for e in self["error"] if isinstance(e, str)]

    def plot(self, title: str | None = None) -> Plot:
        """A bar chart of answers per pod."""
        counts = self.counts()
        fig = new_figure(width=max(4.0, 1.2 * len(counts) + 2), height=3)
        ax = fig.subplots()
        bars = ax.bar([str(k) for k in counts.index], list(counts.values), color="#4c72b0")
        ax.bar_label(bars)
        ax.set_ylabel("answers")
        ax.set_title(title or f"{len(self)} requests, answered by {len(counts)} pod(s)")
        ax.tick_params(axis="x", labelrotation=15)
        fig.tight_layout()
        return Plot(fig, str(self))


def new_figure(width: float = 6.0, height: float = 3.0) -> Any:
    """A matplotlib Figure that needs no GUI and no pyplot state."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


class Plot:
    """A matplotlib figure shown inline as SVG (no JavaScript, no network), with a text stand-in for logs."""

    def __init__(self, figure: Any, text: str = "") -> None:
        self.figure = figure
        self.text = text

    def _repr_svg_(self) -> str:
        buf = io.StringIO()
        self.figure.savefig(buf, format="svg")
        return buf.getvalue()

    def __repr__(self) -> str:
        title = self.figure.axes[0].get_title() if self.figure.axes else ""
        return f"<plot: {title}>" + (f"\n{self.text}" if self.text else "")

    def save(self, path: str) -> None:
        self.figure.savefig(path)
