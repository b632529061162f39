"""Deployment controller (upstream pkg/controller/deployment): Deployment → ReplicaSets.

The new ReplicaSet is `<deploy>-<pod-template-hash>` (see util.compute_hash), its template carries the
`pod-template-hash` label and its selector requires it. Rolling updates follow upstream's arithmetic
(maxSurge rounded up, maxUnavailable rounded down, both 25% by default): scale the new ReplicaSet up to
`replicas + maxSurge - (pods of all sets)`, scale old ones down while at least `replicas -
maxUnavailable` pods stay available. `Recreate` scales old sets to 0 first. Revisions live in the
`deployment.kubernetes.io/revision` annotation; old sets beyond `revisionHistoryLimit` (10) with no
replicas are deleted. Status and the Available / Progressing conditions use upstream's reasons and
messages, so `kubectl get deploy` and `kubectl rollout status` read as on a real cluster.
Events: `ScalingReplicaSet` "Scaled up replica set <rs> from <old> to <new>" (and "Scaled down …").
The progress deadline (ProgressDeadlineExceeded) is not evaluated.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from labkit import errors

from .util import (
    POD_TEMPLATE_HASH,
    canonical,
    compute_hash,
    controller_ref,
    fmt_time,
    int_or_percent,
    json_copy,
    meta,
    name_of,
    ns_of,
    owner_ref,
    parse_time,
    template_without_hash,
)

if TYPE_CHECKING:
    from .manager import Manager

log = logging.getLogger(__name__)

REVISION = "deployment.kubernetes.io/revision"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"


def replicas_of(obj: dict) -> int:
    r = (obj.get("spec") or {}).get("replicas")
    return 1 if r is None else int(r)


def status_replicas(rs: dict, field: str = "replicas") -> int:
    return int((rs.get("status") or {}).get(field) or 0)


def resolve_fenceposts(d: dict) -> tuple[int, int]:
    """ResolveFenceposts: (maxSurge, maxUnavailable); both 0 would deadlock, so unavailable becomes 1."""
    strat = (d.get("spec") or {}).get("strategy") or {}
    if (strat.get("type") or "RollingUpdate") != "RollingUpdate":
        return 0, 0
    ru = strat.get("rollingUpdate") or {}
    n = replicas_of(d)
    surge = int_or_percent(ru.get("maxSurge", "25%"), n, True)
    unavail = int_or_percent(ru.get("maxUnavailable", "25%"), n, False)
    if surge == 0 and unavail == 0:
        unavail = 1
    return surge, unavail


def max_unavailable(d: dict) -> int:
    strat = ((d.get("spec") or {}).get("strategy") or {}).get("type") or "RollingUpdate"
    if strat != "RollingUpdate" or replicas_of(d) == 0:
        return 0
    return min(resolve_fenceposts(d)[1], replicas_of(d))


def new_rs_template(d: dict, h: str) -> dict:
    t = json_copy((d.get("spec") or {}).get("template") or {})
    t.setdefault("metadata", {}).setdefault("labels", {})[POD_TEMPLATE_HASH] = h
    return t


def find_new_rs(d: dict, rss: list[dict]) -> dict | None:
    """FindNewReplicaSet: the oldest set whose template equals the Deployment's, ignoring the hash label."""
    want = canonical(template_without_hash((d.get("spec") or {}).get("template") or {}))
    same = [rs for rs in rss if canonical(template_without_hash((rs.get("spec") or {}).get("template") or {})) == want]
    same.sort(key=lambda r: (meta(r).get("creationTimestamp") or "", name_of(r)))
    return same[0] if same else None


def new_rs_new_replicas(d: dict, all_rss: list[dict], new_rs: dict | None) -> int:
    """NewRSNewReplicas for the rolling strategy (Recreate: simply the desired count)."""
    n = replicas_of(d)
    strat = ((d.get("spec") or {}).get("strategy") or {}).get("type") or "RollingUpdate"
    if strat != "RollingUpdate":
        return n
    surge, _ = resolve_fenceposts(d)
    current = sum(replicas_of(rs) for rs in all_rss)
    max_total = n + surge
    new_cur = replicas_of(new_rs) if new_rs else 0
    if current >= max_total:
        return new_cur
    scale_up = max_total - current
    return new_cur + min(scale_up, n - new_cur)


def revision_of(obj: dict) -> int:
    try:
        return int((meta(obj).get("annotations") or {}).get(REVISION) or 0)
    except ValueError:
        return 0


def set_condition(status: dict, ctype: str, cstatus: str, reason: str, message: str) -> None:
    """SetDeploymentCondition: unchanged status+reason keeps the old condition; same status keeps the
    transition time."""
    conds = status.setdefault("conditions", [])
    cur = next((c for c in conds if c.get("type") == ctype), None)
    ts = fmt_time()
    if cur is not None and cur.get("status") == cstatus and cur.get("reason") == reason:
        return
    new = {"type": ctype, "status": cstatus, "lastUpdateTime": ts, "lastTransitionTime": ts,
           "reason": reason, "message": message}
    if cur is not None and cur.get("status") == cstatus:
        new["lastTransitionTime"] = cur.get("lastTransitionTime", ts)
    status["conditions"] = [c for c in conds if c.get("type") != ctype] + [new]


def calculate_status(d: dict, all_rss: list[dict], new_rs: dict | None, old_status: dict) -> dict:
    """calculateStatus + syncRolloutStatus's conditions (zero counters are omitted, as Go's omitempty)."""
    n = replicas_of(d)
    total_spec = sum(replicas_of(rs) for rs in all_rss)
    st: dict[str, Any] = {"observedGeneration": int(meta(d).get("generation") or 1)}
    vals = {
        "replicas": sum(status_replicas(rs) for rs in all_rss),
        "updatedReplicas": status_replicas(new_rs) if new_rs else 0,
        "readyReplicas": sum(status_replicas(rs, "readyReplicas") for rs in all_rss),
        "availableReplicas": sum(status_replicas(rs, "availableReplicas") for rs in all_rss),
    }
    vals["unavailableReplicas"] = max(total_spec - vals["availableReplicas"], 0)
    for k, v in vals.items():
        if v:
            st[k] = v
    if old_status.get("collisionCount"):
        st["collisionCount"] = old_status["collisionCount"]
    st["conditions"] = json_copy(old_status.get("conditions") or [])
    if vals["availableReplicas"] >= n - max_unavailable(d):
        set_condition(st, "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    else:
        set_condition(st, "Available", "False", "MinimumReplicasUnavailable",
                      "Deployment does not have minimum availability.")
    if new_rs is not None:
        complete = (vals["updatedReplicas"] == n and vals["replicas"] == n and vals["availableReplicas"] >= n)
        rsname = name_of(new_rs)
        if complete:
            set_condition(st, "Progressing", "True", "NewReplicaSetAvailable",
                          f'ReplicaSet "{rsname}" has successfully progressed.')
        elif _progressed(vals, old_status):
            set_condition(st, "Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rsname}" is progressing.')
    if not st["conditions"]:
        del st["conditions"]
    return st


def _progressed(vals: dict[str, int], old: dict) -> bool:
    """DeploymentProgressing: more updated, ready or available pods than the last status said."""
    return any(vals[k] > int(old.get(k) or 0) for k in ("updatedReplicas", "readyReplicas", "availableReplicas"))


def cleanup_candidates(d: dict, old_rss: list[dict]) -> list[dict]:
    """Old sets with no replicas beyond revisionHistoryLimit, oldest revision first."""
    limit = (d.get("spec") or {}).get("revisionHistoryLimit")
    limit = 10 if limit is None else int(limit)
    idle = [rs for rs in old_rss if replicas_of(rs) == 0 and status_replicas(rs) == 0
            and not meta(rs).get("deletionTimestamp")]
    excess = len(idle) - limit
    if excess <= 0:
        return []
    idle.sort(key=lambda r: (revision_of(r), meta(r).get("creationTimestamp") or ""))
    return idle[:excess]


class DeploymentController:
    """Syncs Deployments; keys are (namespace, name)."""

    def __init__(self, mgr: Manager) -> None:
        self.mgr = mgr
        self.recorder = mgr.recorder("deployment-controller")
        self.queue = mgr.new_queue("deployment", self.sync, workers=2)
        mgr.informer("deployments").add_handler(lambda e, o, old: self.queue.add((ns_of(o), name_of(o))))
        mgr.informer("replicasets").add_handler(self._on_rs)

    def _on_rs(self, etype: str, rs: dict, old: dict | None) -> None:
        ref = controller_ref(rs)
        if ref and ref.get("kind") == "Deployment":
            self.queue.add((ns_of(rs), ref.get("name", "")))

    def owned_rss(self, d: dict) -> list[dict]:
        uid = meta(d).get("uid")
        return [rs for rs in self.mgr.informer("replicasets").items()
                if ns_of(rs) == ns_of(d) and (controller_ref(rs) or {}).get("uid") == uid]

    async def sync(self, key: tuple[str, str]) -> None:
        ns, name = key
        d = self.mgr.informer("deployments").get(ns, name)
        if d is None or meta(d).get("deletionTimestamp"):
            return
        d = json_copy(d)
        d.setdefault("apiVersion", "apps/v1")
        d.setdefault("kind", "Deployment")
        rss = self.owned_rss(d)
        new_rs = find_new_rs(d, rss)
        old_rss = [rs for rs in rss if new_rs is None or name_of(rs) != name_of(new_rs)]
        paused = bool((d.get("spec") or {}).get("paused"))
        if not paused:
            strategy = ((d.get("spec") or {}).get("strategy") or {}).get("type") or "RollingUpdate"
            if new_rs is None:
                if strategy == "Recreate" and any(replicas_of(rs) for rs in old_rss):
                    await self._scale_old_to_zero(d, old_rss)
                    return
                new_rs = await self._create_new_rs(d, rss, old_rss)
                if new_rs is None:
                    return
                rss = [*old_rss, new_rs]
            else:
                new_rs = await self._sync_rs_annotations(d, new_rs, old_rss)
                rss = [*old_rss, new_rs]
            if strategy == "Recreate":
                if any(status_replicas(rs) for rs in old_rss) or any(replicas_of(rs) for rs in old_rss):
                    await self._scale_old_to_zero(d, old_rss)
                elif replicas_of(new_rs) != replicas_of(d):
                    new_rs = await self._scale(d, new_rs, replicas_of(d))
            else:
                new_rs = await self._rolling(d, new_rs, old_rss)
            rss = [*[self.mgr.informer("replicasets").get(ns_of(r), name_of(r)) or r for r in old_rss], new_rs]
            for rs in cleanup_candidates(d, old_rss):
                try:
                    await self.mgr.client.delete("replicasets", name_of(rs), namespace=ns)
                except errors.NotFound:
                    pass
        await self._write_status(d, rss, new_rs)

    async def _create_new_rs(self, d: dict, rss: list[dict], old_rss: list[dict]) -> dict | None:
        st = d.get("status") or {}
        collision = st.get("collisionCount")
        h = compute_hash((d.get("spec") or {}).get("template") or {}, collision)
        rsname = f"{name_of(d)}-{h}"
        surge, _ = resolve_fenceposts(d)
        revision = max([revision_of(rs) for rs in old_rss] + [0]) + 1
        selector = json_copy((d.get("spec") or {}).get("selector") or {})
        selector.setdefault("matchLabels", {})[POD_TEMPLATE_HASH] = h
        replicas = new_rs_new_replicas(d, rss, None)
        rs = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": rsname,
                "namespace": ns_of(d),
                "labels": dict(new_rs_template(d, h)["metadata"]["labels"]),
                "annotations": {DESIRED: str(replicas_of(d)), MAX_REPLICAS: str(replicas_of(d) + surge),
                                REVISION: str(revision)},
                "ownerReferences": [owner_ref(d)],
            },
            "spec": {
                "replicas": replicas,
                "minReadySeconds": int((d.get("spec") or {}).get("minReadySeconds") or 0),
                "selector": selector,
                "template": new_rs_template(d, h),
            },
        }
        try:
            created = await self.mgr.client.create(rs, namespace=ns_of(d))
        except errors.AlreadyExists:
            existing = await self.mgr.client.get("replicasets", rsname, namespace=ns_of(d))
            if (controller_ref(existing) or {}).get("uid") == meta(d).get("uid"):
                return existing  # ours, the informer had not seen it yet
            # a hash collision with someone else's set: bump collisionCount and retry (upstream)
            st = json_copy(d.get("status") or {})
            st["collisionCount"] = int(st.get("collisionCount") or 0) + 1
            new = json_copy(d)
            new["status"] = st
            await self.mgr.client.replace(new, subresource="status")
            return None
        if replicas > 0:
            self.recorder.event(d, "Normal", "ScalingReplicaSet",
                                f"Scaled up replica set {rsname} from 0 to {replicas}")
        d.setdefault("metadata", {}).setdefault("annotations", {})[REVISION] = str(revision)
        st = d.setdefault("status", {})
        set_condition(st, "Progressing", "True", "NewReplicaSetCreated", f'Created new replica set "{rsname}"')
        return created

    async def _sync_rs_annotations(self, d: dict, rs: dict, old_rss: list[dict]) -> dict:
        """Keep the new set's revision the highest, and desired/max-replicas current."""
        surge, _ = resolve_fenceposts(d)
        ann = dict(meta(rs).get("annotations") or {})
        max_old = max([revision_of(r) for r in old_rss] + [0])
        want = dict(ann)
        if revision_of(rs) <= max_old:
            want[REVISION] = str(max_old + 1)
        want[DESIRED] = str(replicas_of(d))
        want[MAX_REPLICAS] = str(replicas_of(d) + surge)
        if want == ann:
            return rs
        new = json_copy(rs)
        new["metadata"]["annotations"] = want
        return await self.mgr.client.replace(new)

    async def _scale(self, d: dict, rs: dict, to: int) -> dict:
        frm = replicas_of(rs)
        if frm == to:
            return rs
        surge, _ = resolve_fenceposts(d)
        new = json_copy(rs)
        new["spec"]["replicas"] = to
        ann = new["metadata"].setdefault("annotations", {})
        ann[DESIRED] = str(replicas_of(d))
        ann[MAX_REPLICAS] = str(replicas_of(d) + surge)
        updated = await self.mgr.client.replace(new)
        direction = "up" if to > frm else "down"
        self.recorder.event(d, "Normal", "ScalingReplicaSet",
                            f"Scaled {direction} replica set {name_of(rs)} from {frm} to {to}")
        return updated

    async def _scale_old_to_zero(self, d: dict, old_rss: list[dict]) -> None:
        for rs in old_rss:
            if replicas_of(rs):
                await self._scale(d, rs, 0)

    async def _rolling(self, d: dict, new_rs: dict, old_rss: list[dict]) -> dict:
        n = replicas_of(d)
        active_old = [rs for rs in old_rss if replicas_of(rs) > 0]
        all_rss = [*old_rss, new_rs]
        # reconcileNewReplicaSet
        if replicas_of(new_rs) > n:
            new_rs = await self._scale(d, new_rs, n)
        elif replicas_of(new_rs) < n:
            if not active_old:
                new_rs = await self._scale(d, new_rs, n)  # a plain scaling event
            else:
                new_rs = await self._scale(d, new_rs, new_rs_new_replicas(d, all_rss, new_rs))
        if not active_old:
            return new_rs
        # reconcileOldReplicaSets
        all_rss = [*old_rss, new_rs]
        all_pods = sum(replicas_of(rs) for rs in all_rss)
        min_available = n - max_unavailable(d)
        new_unavailable = replicas_of(new_rs) - status_replicas(new_rs, "availableReplicas")
        max_scaled_down = all_pods - min_available - new_unavailable
        if max_scaled_down <= 0:
            return new_rs
        # cleanupUnhealthyReplicas: old sets' unavailable pods go first
        for rs in sorted(active_old, key=lambda r: meta(r).get("creationTimestamp") or ""):
            if max_scaled_down <= 0:
                break
            unhealthy = replicas_of(rs) - status_replicas(rs, "availableReplicas")
            if unhealthy <= 0:
                continue
            down = min(max_scaled_down, unhealthy)
            rs_new = await self._scale(d, rs, replicas_of(rs) - down)
            rs.update(rs_new)
            max_scaled_down -= down
        # scaleDownOldReplicaSetsForRollingUpdate
        available = sum(status_replicas(rs, "availableReplicas") for rs in [*old_rss, new_rs])
        if available <= min_available:
            return new_rs
        total_down = available - min_available
        for rs in sorted(active_old, key=lambda r: meta(r).get("creationTimestamp") or ""):
            if total_down <= 0:
                break
            if replicas_of(rs) == 0:
                continue
            down = min(replicas_of(rs), total_down)
            await self._scale(d, rs, replicas_of(rs) - down)
            total_down -= down
        return new_rs

    async def _write_status(self, d: dict, rss: list[dict], new_rs: dict | None) -> None:
        old_status = d.get("status") or {}
        st = calculate_status(d, rss, new_rs, old_status)
        want_rev = str(revision_of(new_rs)) if new_rs is not None else None
        cur = self.mgr.informer("deployments").get(ns_of(d), name_of(d)) or d
        cur_rev = (meta(cur).get("annotations") or {}).get(REVISION)
        if want_rev and want_rev != "0" and cur_rev != want_rev:
            try:
                await self.mgr.client.patch("deployments", name_of(d),
                                            {"metadata": {"annotations": {REVISION: want_rev}}}, namespace=ns_of(d))
            except errors.NotFound:
                return
        if _strip_times(st) == _strip_times(cur.get("status") or {}):
            return
        new = json_copy(cur)
        new["status"] = st
        new["metadata"].pop("resourceVersion", None)
        try:
            await self.mgr.client.replace(new, subresource="status")
        except errors.NotFound:
            return


def _strip_times(st: dict) -> str:
    s = json_copy(st)
    for c in s.get("conditions") or []:
        c.pop("lastUpdateTime", None)
        c.pop("lastTransitionTime", None)
    return canonical(s)


__all__ = ["DeploymentController", "calculate_status", "find_new_rs", "new_rs_new_replicas", "parse_time"]
