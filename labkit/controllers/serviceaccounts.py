"""Two per-namespace controllers of kube-controller-manager that every namespace shows the effect of.

- serviceaccount-controller (pkg/controller/serviceaccount/serviceaccounts_controller.go): every active
  namespace has a ServiceAccount `default`; deleting it brings it back. Since Kubernetes 1.24 no token Secret
  is made for it, so `kubectl get sa` shows SECRETS 0.
- root-ca-cert-publisher (pkg/controller/certificates/rootcacertpublisher/publisher.go): every active namespace
  has a ConfigMap `kube-root-ca.crt` whose `ca.crt` is the cluster CA, with upstream's description annotation;
  an edited or deleted one is put back.

Namespaces being deleted are left alone (their content is going away). Keys are namespace names.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from labkit import errors

from .util import json_copy, meta, name_of, ns_of

if TYPE_CHECKING:
    from .manager import Manager

log = logging.getLogger(__name__)

DEFAULT_SERVICE_ACCOUNT = "default"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
ROOT_CA_DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as "
    "the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of "
    "Kubernetes clusters."
)


def _active_namespace(mgr: Manager, name: str) -> bool:
    ns = mgr.informer("namespaces").get("", name)
    return ns is not None and not meta(ns).get("deletionTimestamp") \
        and (ns.get("status") or {}).get("phase") != "Terminating"


class ServiceAccountsController:
    """Ensures the `default` ServiceAccount of every active namespace."""

    def __init__(self, mgr: Manager) -> None:
        self.mgr = mgr
        self.queue = mgr.new_queue("serviceaccount", self.sync, workers=2)
        mgr.informer("namespaces").add_handler(lambda etype, ns, old: self.queue.add(name_of(ns)))
        mgr.informer("serviceaccounts").add_handler(self._on_sa)

    def _on_sa(self, etype: str, sa: dict, old: dict | None) -> None:
        if etype == "DELETED" and name_of(sa) == DEFAULT_SERVICE_ACCOUNT:
            self.queue.add(ns_of(sa))

    async def sync(self, namespace: str) -> None:
        if not _active_namespace(self.mgr, namespace):
            return
        if self.mgr.informer("serviceaccounts").get(namespace, DEFAULT_SERVICE_ACCOUNT) is not None:
            return
        sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": DEFAULT_SERVICE_ACCOUNT}}
        try:
            await self.mgr.client.create(sa, namespace=namespace)
        except (errors.AlreadyExists, errors.NotFound):
            pass
        except errors.Forbidden:  # the namespace began terminating meanwhile
            pass


class RootCACertPublisher:
    """Keeps `kube-root-ca.crt` in every active namespace equal to the cluster's CA bundle."""

    def __init__(self, mgr: Manager, root_ca: str) -> None:
        self.mgr = mgr
        self.root_ca = root_ca
        self.queue = mgr.new_queue("root-ca-cert-publisher", self.sync, workers=2)
        mgr.informer("namespaces").add_handler(lambda etype, ns, old: self.queue.add(name_of(ns)))
        mgr.informer("configmaps").add_handler(self._on_configmap)

    def _on_configmap(self, etype: str, cm: dict, old: dict | None) -> None:
        if name_of(cm) == ROOT_CA_CONFIGMAP:
            self.queue.add(ns_of(cm))

    async def sync(self, namespace: str) -> None:
        if not _active_namespace(self.mgr, namespace):
            return
        data, annotations = {"ca.crt": self.root_ca}, {DESCRIPTION_ANNOTATION: ROOT_CA_DESCRIPTION}
        current = self.mgr.informer("configmaps").get(namespace, ROOT_CA_CONFIGMAP)
        try:
            if current is None:
                await self.mgr.client.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
                    "name": ROOT_CA_CONFIGMAP, "annotations": annotations}, "data": data}, namespace=namespace)
                return
            have = meta(current).get("annotations") or {}
            if current.get("data") == data and have.get(DESCRIPTION_ANNOTATION):
                return  # upstream accepts any description, as long as there is one
            new = json_copy(current)
            new["data"] = data
            new["metadata"]["annotations"] = {**have, **annotations}
            await self.mgr.client.replace(new)
        except (errors.AlreadyExists, errors.NotFound, errors.Forbidden):
            pass
        except errors.Conflict:
            self.queue.add_after(namespace, 0.1)
