"""serviceaccount-controller and root-ca-cert-publisher over the in-memory fake API."""

from __future__ import annotations

import copy

from labkit.controllers.manager import Manager
from labkit.controllers.serviceaccounts import DESCRIPTION_ANNOTATION, ROOT_CA_CONFIGMAP, ROOT_CA_DESCRIPTION

from .test_controllers_manager import FakeApi, FakeInformer, settle

CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


async def _start() -> tuple[FakeApi, Manager]:
    api = FakeApi()
    mgr = Manager(api, informer_factory=lambda c, r: FakeInformer(api, r), root_ca=CA)
    await mgr.start()
    return api, mgr


def _namespace(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "status": {"phase": "Active"}}


async def test_every_active_namespace_gets_default_sa_and_root_ca() -> None:
    api, mgr = await _start()
    try:
        await api.create(_namespace("team-a"))
        await settle(mgr)
        assert ("serviceaccounts", "team-a", "default") in api.store
        cm = api.store[("configmaps", "team-a", ROOT_CA_CONFIGMAP)]
        assert cm["data"] == {"ca.crt": CA.decode()}
        assert cm["metadata"]["annotations"] == {DESCRIPTION_ANNOTATION: ROOT_CA_DESCRIPTION}

        # deleted or edited: put back
        await api.delete("serviceaccounts", "default", "team-a")
        edited = copy.deepcopy(api.store[("configmaps", "team-a", ROOT_CA_CONFIGMAP)])
        edited["data"] = {"ca.crt": "tampered"}
        await api.replace(edited)
        await settle(mgr)
        assert ("serviceaccounts", "team-a", "default") in api.store
        assert api.store[("configmaps", "team-a", ROOT_CA_CONFIGMAP)]["data"] == {"ca.crt": CA.decode()}
    finally:
        await mgr.stop()


async def test_terminating_namespace_is_left_alone() -> None:
    api, mgr = await _start()
    try:
        ns = _namespace("going")
        ns["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:00Z"
        ns["metadata"]["finalizers"] = ["x/keep"]
        ns["status"]["phase"] = "Terminating"
        await api.create(ns)
        await settle(mgr)
        assert not [k for k in api.store if k[1] == "going"]
    finally:
        await mgr.stop()
