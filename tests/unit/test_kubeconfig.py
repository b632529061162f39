"""labkit.kubeconfig: tokens (labkit's clusters) and client certificates (kind's, kubeadm's), any context."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import pytest
import yaml

from labkit import kubeconfig, pki
from labkit.client import Client


def write(path: Path, users: list[dict], contexts: list[tuple[str, str]], current: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": current,
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "contexts": [{"name": name, "context": {"cluster": "c", "user": user}} for name, user in contexts],
        "users": users}))
    return path


@pytest.fixture
def keys(tmp_path: Path) -> pki.Pki:
    return pki.ensure(tmp_path / "pki")


def test_client_certificate_data_is_presented(tmp_path: Path, keys: pki.Pki) -> None:
    b64 = {k: base64.b64encode(p.read_bytes()).decode() for k, p in (("crt", keys.server_cert),
                                                                      ("key", keys.server_key))}
    path = write(tmp_path / "config", [{"name": "kind-x", "user": {"client-certificate-data": b64["crt"],
                                                                    "client-key-data": b64["key"]}}],
                 [("kind-x", "kind-x")], "kind-x")
    access = kubeconfig.read(path)
    assert access.token == "" and access.cert_data == keys.server_cert.read_bytes()
    context = access.ssl_context()  # load_cert_chain refuses a key that does not match its certificate
    assert isinstance(context, ssl.SSLContext)
    client = Client.from_kubeconfig(path)
    assert "Authorization" not in client._headers and client._ssl is not True


def test_certificate_files_and_a_context_other_than_the_current(tmp_path: Path, keys: pki.Pki) -> None:
    path = write(tmp_path / "config", [
        {"name": "alice", "user": {"token": "t0ken"}},
        {"name": "admin", "user": {"client-certificate": str(keys.server_cert), "client-key": str(keys.server_key)}},
    ], [("learner", "alice"), ("admin", "admin")], "learner")
    assert kubeconfig.read(path).token == "t0ken"
    admin = kubeconfig.read(path, context="admin")
    assert admin.cert_data == keys.server_cert.read_bytes() and admin.key_data == keys.server_key.read_bytes()


def test_a_key_that_does_not_match_is_refused(tmp_path: Path, keys: pki.Pki) -> None:
    other = pki.ensure(tmp_path / "other")
    access = kubeconfig.Access("https://127.0.0.1:6443", "", None, keys.server_cert.read_bytes(),
                               other.server_key.read_bytes())
    with pytest.raises(ssl.SSLError):
        access.ssl_context()
