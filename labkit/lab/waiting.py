"""`Lab.wait_for`: wait until what the cluster shows meets a condition, and say what was last seen if it never does.

Each condition is checked again every `INTERVAL` seconds until it holds or the time is up. Some things a lab waits
for have no event to watch (a DNS answer, the load balancer's table), so every condition is checked the same way;
the interval is short, and the wait ends as soon as the condition holds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labkit import errors

if TYPE_CHECKING:
    from labkit.lab.core import Lab

INTERVAL = 0.05
TIMEOUT_ENV = "LABKIT_WAIT_TIMEOUT"  # seconds: overrides every wait's timeout (tests that break a cluster on purpose)


class WaitTimeout(errors.LabkitError, TimeoutError):
    """A condition did not hold in time; the message says what was last seen."""


@dataclass
class Check:
    what: str  # "deploy/nginx to finish its rollout"
    probe: Callable[[], tuple[bool, str, Any]]  # -> (holds, what was seen, value to return)


@dataclass
class Waited:
    """What a finished wait saw: `value` is what the condition returned (the object, the table, the answer)."""

    what: str
    seen: str
    seconds: float
    value: Any

    def __repr__(self) -> str:
        return f"done waiting for {self.what} after {self.seconds:.1f} s: {self.seen}"


def wait(check: Check, timeout: float) -> Waited:
    if os.environ.get(TIMEOUT_ENV):
        timeout = float(os.environ[TIMEOUT_ENV])
    start = time.monotonic()
    deadline = start + timeout
    seen = "nothing yet"
    while True:
        try:
            ok, seen, value = check.probe()
        except (errors.LabkitError, OSError, EOFError, LookupError) as exc:
            ok, seen, value = False, f"{type(exc).__name__}: {exc}", None
        if ok:
            return Waited(check.what, seen, time.monotonic() - start, value)
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {check.what}; last seen: {seen}")
        time.sleep(INTERVAL)


def condition_for(lab: Lab, namespace: str, *, condition: Callable[[], Any] | None, rollout: str | None,
                  pods: str | None, endpoints: str | None, dns: str | None, ipvs: str | None, count: int | None,
                  from_pod: str | None, what: str | None) -> Check:
    given = [x for x in (condition, rollout, pods, endpoints, dns, ipvs) if x is not None]
    if len(given) != 1:
        raise ValueError("wait_for takes exactly one of: a condition, rollout=, pods=, endpoints=, dns=, ipvs=")
    if condition is not None:
        return Check(what or getattr(condition, "__name__", "the condition"), lambda: _callable(condition))
    if rollout is not None:
        return Check(what or f"{rollout} to finish its rollout", lambda: _rollout(lab, namespace, rollout))
    if pods is not None:
        n = f"{count} " if count is not None else ""
        return Check(what or f"{n}pods {pods} to be Ready", lambda: _pods(lab, namespace, pods, count))
    if endpoints is not None:
        n = f"{count}" if count is not None else "some"
        return Check(what or f"Service {endpoints} to have {n} ready endpoints",
                     lambda: _endpoints(lab, namespace, endpoints, count))
    if dns is not None:
        n = f" to {count} addresses" if count is not None else ""
        return Check(what or f"{dns} to resolve{n}", lambda: _dns(lab, namespace, dns, count, from_pod))
    assert ipvs is not None
    n = f"{count}" if count is not None else "some"
    return Check(what or f"the load balancer to send Service {ipvs} to {n} real servers",
                 lambda: _ipvs(lab, namespace, ipvs, count))


def _callable(condition: Callable[[], Any]) -> tuple[bool, str, Any]:
    value = condition()
    return bool(value), repr(value)[:300], value


def _rollout(lab: Lab, namespace: str, target: str) -> tuple[bool, str, Any]:
    """kubectl rollout status's viewers (Deployment, StatefulSet, DaemonSet), then the pods themselves.

    A controller's status counts can be stale for a moment: a pod deleted and replaced leaves the generation as it
    was, and the status may still count the old pod as ready. So once the status says done, the pods the workload
    selects must say so too: as many as it wants, none extra, every one Ready (a StatefulSet's by their names)."""
    kind, _, name = target.partition("/")
    obj = lab.resource(kind, name, namespace)
    done, seen = _rollout_status(obj)
    if not done:
        return False, seen, obj
    done, seen = _rollout_pods(lab, namespace, obj)
    return done, seen, obj


def _rollout_status(obj: dict[str, Any]) -> tuple[bool, str]:
    """What `kubectl rollout status` says of `obj` (polymorphichelpers' status viewers), and whether it is done."""
    kind, spec, st = obj["kind"], obj.get("spec") or {}, obj.get("status") or {}
    observed, generation = int(st.get("observedGeneration", 0)), int(obj["metadata"].get("generation", 0))
    if observed == 0 or generation > observed:
        return False, f"waiting for the {kind}'s spec update to be observed"
    want, updated = int(spec.get("replicas", 1)), int(st.get("updatedReplicas", 0))
    if kind == "Deployment":
        total, available = int(st.get("replicas", 0)), int(st.get("availableReplicas", 0))
        if updated < want:
            return False, f"{updated} out of {want} new replicas have been updated"
        if total > updated:
            return False, f"{total - updated} old replicas are pending termination"
        if available < updated:
            return False, f"{available} of {updated} updated replicas are available"
        return True, f"{updated} of {want} replicas updated and available"
    if kind == "StatefulSet":
        strategy = spec.get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            raise ValueError("rollout status is only available for RollingUpdate strategy type")
        ready = int(st.get("readyReplicas", 0))
        if ready < want:
            return False, f"{ready} of {want} pods ready"
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
        if updated < want - partition:
            return False, f"{updated} out of {want - partition} new pods have been updated"
        return True, f"{ready} of {want} pods ready, {updated} updated"
    if kind == "DaemonSet":
        desired = int(st.get("desiredNumberScheduled", 0))
        updated, available = int(st.get("updatedNumberScheduled", 0)), int(st.get("numberAvailable", 0))
        if updated < desired:
            return False, f"{updated} out of {desired} new pods have been updated"
        if available < desired:
            return False, f"{available} of {desired} updated pods are available"
        return True, f"{available} of {desired} pods updated and available"
    raise ValueError(f"no rollout status for a {kind} (Deployment, StatefulSet or DaemonSet)")


def _rollout_pods(lab: Lab, namespace: str, obj: dict[str, Any]) -> tuple[bool, str]:
    """Whether the pods `obj` selects are the ones its finished rollout stands for; what they are."""
    from labkit.controllers.util import selector_matches

    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    pods = sorted((p for p in lab.resources("pods", namespace=namespace)
                   if not p["metadata"].get("deletionTimestamp")
                   and selector_matches(spec.get("selector"), p["metadata"].get("labels"))),
                  key=lambda p: p["metadata"]["name"])
    names = [p["metadata"]["name"] for p in pods]
    not_ready = [p["metadata"]["name"] for p in pods if not _is_ready(p)]
    if obj["kind"] == "DaemonSet":
        want = int(st.get("desiredNumberScheduled", 0))
        ok = len(pods) == want
    else:
        want = int(spec.get("replicas", 1))
        ok = len(pods) == want
        if obj["kind"] == "StatefulSet":
            first = int((spec.get("ordinals") or {}).get("start") or 0)
            ok = set(names) == {f"{obj['metadata']['name']}-{i}" for i in range(first, first + want)}
    seen = f"the status says done; pods: {', '.join(names) or 'none'}"
    if not_ready:
        seen += f" ({', '.join(not_ready)} not Ready)"
    return ok and not not_ready, seen


def _is_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _pods(lab: Lab, namespace: str, selector: str, count: int | None) -> tuple[bool, str, Any]:
    items = [p for p in lab.resources("pods", namespace=namespace, selector=selector)
             if not p["metadata"].get("deletionTimestamp")]
    parts = []
    for p in sorted(items, key=lambda p: p["metadata"]["name"]):
        st = p.get("status") or {}
        state = "Ready" if _is_ready(p) else f"not Ready ({st.get('phase', '?')})"
        parts.append(f"{p['metadata']['name']} {state} {st.get('podIP') or ''}".rstrip())
    ok = bool(items) and all(_is_ready(p) for p in items) and (count is None or len(items) == count)
    return ok, f"{len(items)} pods: " + ", ".join(parts) if parts else "no pods match", items


def _endpoints(lab: Lab, namespace: str, service: str, count: int | None) -> tuple[bool, str, Any]:
    table = lab.endpoints(service, namespace=namespace)
    ready, not_ready = table.addresses(ready=True), table.addresses(ready=False)
    ok = len(ready) == count if count is not None else bool(ready)
    seen = f"{len(ready)} ready ({', '.join(ready) or '-'}), {len(not_ready)} not ready ({', '.join(not_ready) or '-'})"
    return ok, seen, table


def _dns(lab: Lab, namespace: str, name: str, count: int | None, from_pod: str | None) -> tuple[bool, str, Any]:
    result = lab.resolve(name, from_pod=from_pod, namespace=namespace)
    addresses = sorted(set(result.addresses))
    ok = bool(addresses) and (count is None or len(addresses) == count)
    tries = "; ".join(f"{t.name} {t.outcome}" for t in result.tries)
    return ok, f"{tries} → {', '.join(addresses) or 'no address'}", result


def _ipvs(lab: Lab, namespace: str, service: str, count: int | None) -> tuple[bool, str, Any]:
    wanted = lab.service_addresses(service, namespace=namespace)
    table = lab.ipvs(service, namespace=namespace)
    if not wanted:
        return False, f"Service {service} has no cluster IP, external IP or node port", table
    parts, ok = [], True
    for proto, address, port in wanted:
        key = f"{address}:{port}"
        if key not in set(table["virtual"]):
            ok = False
            parts.append(f"no virtual server {proto} {key}")
            continue
        rs = table.real_servers(key, weighted=True)
        ok = ok and (len(rs) == count if count is not None else bool(rs))
        parts.append(f"{proto} {key} → {len(rs)} real servers ({', '.join(rs) or '-'})")
    return ok, "; ".join(parts), table
