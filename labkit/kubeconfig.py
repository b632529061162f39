"""Reading and writing kubeconfig files, kept free of HTTP libraries so light callers stay light."""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class Access:
    """How the current context reaches its API server: a bearer token (labkit's own clusters) or a client
    certificate (kind's, kubeadm's)."""

    server: str
    token: str
    ca_data: bytes | None
    cert_data: bytes | None = None
    key_data: bytes | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """TLS trusting the cluster's CA, presenting the client certificate when there is one."""
        context = ssl.create_default_context(cadata=self.ca_data.decode() if self.ca_data else None)
        if self.cert_data and self.key_data:
            # load_cert_chain reads files only: a private file, gone once loaded.
            with tempfile.NamedTemporaryFile("wb", prefix="labkit-client-", suffix=".pem") as pem:
                pem.write(self.cert_data.rstrip(b"\n") + b"\n" + self.key_data)
                pem.flush()
                context.load_cert_chain(pem.name)
        return context


def default_path() -> Path:
    return Path(os.environ.get("KUBECONFIG") or Path.home() / ".kube" / "config")


def _data(entry: dict, key: str) -> bytes | None:
    """`<key>-data` (base64) or the file `<key>` names."""
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"])
    if entry.get(key):
        return Path(entry[key]).expanduser().read_bytes()
    return None


def read(path: str | os.PathLike[str] | None = None, context: str | None = None) -> Access:
    """The server, bearer token or client certificate and CA of `context` (default: the current context)."""
    config = yaml.safe_load(Path(path or default_path()).read_text())
    context_name = context or config.get("current-context")
    chosen = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == chosen["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == chosen["user"])
    return Access(cluster["server"], user.get("token", ""), _data(cluster, "certificate-authority"),
                  _data(user, "client-certificate"), _data(user, "client-key"))

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
