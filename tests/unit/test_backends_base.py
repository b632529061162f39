"""Backend selection (argument, else $LABKIT_BACKEND, else embedded) and the embedded backend's refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit import errors
from labkit.backends import base
from labkit.backends.embedded import EmbeddedBackend


def test_selection_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LABKIT_BACKEND", raising=False)
    assert base.backend_name() == "embedded"
    monkeypatch.setenv("LABKIT_BACKEND", "kind")
    assert base.backend_name() == "kind" and base.backend_name("embedded") == "embedded"
    backend = base.get_backend("embedded", home=tmp_path / "home")
    assert isinstance(backend, EmbeddedBackend) and backend.kubeconfig == tmp_path / "home" / "kubeconfig"
    with pytest.raises(errors.LabkitError, match="unknown backend 'nope'"):
        base.get_backend("nope")


def test_embedded_backend_without_a_cluster(tmp_path: Path) -> None:
    backend = EmbeddedBackend(tmp_path / "home")
    assert not backend.running()
    with pytest.raises(errors.ClusterNotRunning, match="no embedded cluster is running"):
        backend.connect(timeout=1)
    with pytest.raises(errors.Unavailable, match="iptables"):
        backend.start(proxy_mode="iptables")
    assert backend.stop() is False
