"""Pod IP allocation for the node's pod range, persisted so a restarted node agent keeps assignments.

Like CNI's host-local plugin (what kind's kindnet uses): addresses are handed out round-robin after the
last one reserved, so a new pod usually gets a fresh IP rather than the one a deleted pod just released —
a lab can see that a replacement pod has a new address. An IP held by a live pod is never handed out.
"""

from __future__ import annotations

import ipaddress
import json
import os
import threading
from pathlib import Path


class IPAM:
    """Allocates IPv4 addresses of `subnet` (skipping network, gateway and broadcast) to pod UIDs."""

    def __init__(self, path: Path, subnet: str = "10.244.0.0/24", gateway: str = "10.244.0.1") -> None:
        self.path = path
        self.net = ipaddress.IPv4Network(subnet)
        self.gateway = ipaddress.IPv4Address(gateway)
        self._lock = threading.Lock()
        self._state: dict[str, object] = {"last": None, "allocations": {}}
        if path.exists():
            self._state = json.loads(path.read_text())

    @property
    def allocations(self) -> dict[str, str]:
        """ip -> pod uid."""
        return dict(self._state["allocations"])  # type: ignore[arg-type]

    def ip_of(self, uid: str) -> str | None:
        return next((ip for ip, owner in self.allocations.items() if owner == uid), None)

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._state, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    def allocate(self, uid: str) -> str:
        """The IP of `uid` (the one it already holds, or the next free one)."""
        with self._lock:
            existing = self.ip_of(uid)
            if existing:
                return existing
            taken = self.allocations
            candidates = [h for h in self.net.hosts() if h != self.gateway]
            last = self._state.get("last")
            start = 0
            if last is not None and ipaddress.IPv4Address(last) in candidates:
                start = candidates.index(ipaddress.IPv4Address(last)) + 1
            for i in range(len(candidates)):
                ip = str(candidates[(start + i) % len(candidates)])
                if ip not in taken:
                    self._state["allocations"][ip] = uid  # type: ignore[index]
                    self._state["last"] = ip
                    self._save()
                    return ip
            raise RuntimeError(f"no free pod IP left in {self.net}")

    def release(self, uid: str) -> None:
        with self._lock:
            allocations: dict[str, str] = self._state["allocations"]  # type: ignore[assignment]
            for ip in [ip for ip, owner in allocations.items() if owner == uid]:
                del allocations[ip]
            self._save()

    def reset(self) -> None:
        """Forget everything (after cleanup removed every pod)."""
        with self._lock:
            self._state = {"last": None, "allocations": {}}
            self._save()
