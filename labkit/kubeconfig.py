"""Reading and writing kubeconfig files, kept free of HTTP libraries so light callers stay light."""

from __future__ import annotations

import base64
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class Access:
    """How the current context reaches its API server."""

    server: str
    token: str
    ca_data: bytes | None


def default_path() -> Path:
    return Path(os.environ.get("KUBECONFIG") or Path.home() / ".kube" / "config")


def read(path: str | os.PathLike[str] | None = None) -> Access:
    """The current context's server, bearer token and CA (embedded or from its file)."""
    config = yaml.safe_load(Path(path or default_path()).read_text())
    context_name = config.get("current-context")
    context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    ca = cluster.get("certificate-authority-data")
    ca_data = base64.b64decode(ca) if ca else None
    if not ca_data and cluster.get("certificate-authority"):
        ca_data = Path(cluster["certificate-authority"]).read_bytes()
    return Access(cluster["server"], user.get("token", ""), ca_data)


def write_kubeconfig(path: Path, server: str, token: str, ca_pem: bytes, *, name: str = "labkit") -> None:
    """A kubeconfig with an embedded CA and a bearer token, written atomically, mode 0600."""
    config = {
        "apiVersion": "v1", "kind": "Config", "preferences": {}, "current-context": name,
        "clusters": [{"name": name, "cluster": {"server": server,
                                                "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": "default"}}],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".kubeconfig.")
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
