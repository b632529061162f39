"""The node agent's control loop ("kubelet"): pods bound to this node → sandboxes, containers, probes, status.

    kubelet = Kubelet(client, Node(home), home, node_name="labkit-control-plane")
    await kubelet.run()          # never returns; containers outlive the agent (they belong to the zygote)

One `PodWorker` per pod UID, level-triggered and coalesced: informer events, container exits, probe results
and back-off timers only set its wake-up flag; one sync then compares what runs with the pod's spec, starts
or restarts containers (CrashLoopBackOff / ImagePullBackOff like kubelet), and writes the status when it
changed. A deletionTimestamp makes it stop the containers (SIGTERM, grace period, SIGKILL), remove the
sandbox and delete the pod with grace 0. After an agent restart the worker adopts the containers the zygote
still runs; sandboxes whose pod is gone are removed at start.

Sources (read, not copied), kubernetes v1.32: pkg/kubelet/kuberuntime/kuberuntime_manager.go
(computePodActions, doBackOff: "back-off %s restarting failed container=%s pod=%s", BackOff event),
kuberuntime_container.go (Created/Started/Killing events), pkg/kubelet/images/image_manager.go (Pulled,
Failed, BackOff messages; PR #127918 puts the pull error in the ImagePullBackOff message),
pkg/kubelet/nodestatus/setters.go (node conditions), pkg/kubelet/pod_workers.go.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import platform
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit import errors
from labkit.client import Client, Informer
from labkit.controllers.events import EventRecorder
from labkit.node import status as st_mod
from labkit.node import system_pods
from labkit.node.images import ImageError, image_files, resolve_image
from labkit.node.node import Node, container_id
from labkit.node.nsutil import NetnsSockets
from labkit.node.podfiles import SandboxConfigError
from labkit.node.probes import Prober, probe_loop
from labkit.node.sandbox import Sandbox, ensure_private_dir
from labkit.node.security import ConfigError, Security, container_security, unenforced
from labkit.node.status import Backoff, fmt_time, go_duration, pod_ref
from labkit.node.streaming import ExecTarget, LogSource, StreamError
from labkit.node.volumes import Sources, VolumeError, Volumes, volume_references

log = logging.getLogger("labkit.node.kubelet")

NODE_NAME = "labkit-control-plane"
HEARTBEAT_SECONDS = 10.0
DEFAULT_GRACE = 30
SYSTEM_POD_REFRESH_SECONDS = 10.0  # how often a system pod's status follows its process (restarts)
SANDBOX_RETRY_SECONDS = 10.0  # kubelet's pod worker back-off after a failed sync (backOffPeriod)
CONFIG_RETRY_SECONDS = 10.0


class KubeletRecorder(EventRecorder):
    """client-go's recorder plus `involvedObject.fieldPath` (`spec.containers{nginx}`) for container events."""

    def make_event(self, obj: dict, etype: str, reason: str, message: str) -> dict:
        ev = super().make_event(obj, etype, reason, message)
        if obj.get("_fieldPath"):
            ev["involvedObject"]["fieldPath"] = obj["_fieldPath"]
        return ev


@dataclass
class ContainerState:
    """What the kubelet knows of one container of a pod (its current or last run)."""

    name: str
    restart_count: int = 0
    record: dict[str, Any] | None = None        # the zygote's record of the current/last run
    exit_time: float = 0.0                        # wall time its exit was seen
    last_terminated: dict[str, Any] | None = None
    waiting: tuple[str, str] = ("ContainerCreating", "")
    started: bool = False
    ready: bool = False
    env: dict[str, str] = field(default_factory=dict)
    security: Security = field(default_factory=Security)
    working_dir: str | None = None
    retry_at: float = 0.0                         # after a CreateContainerConfigError
    probers: list[asyncio.Task[None]] = field(default_factory=list)
    probers_for: int | None = None                # pid the probers watch
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    ever_ran: bool = False

    @property
    def running(self) -> bool:
        return bool(self.record and self.record.get("running"))


def terminated_state(rec: dict[str, Any], cid: str) -> dict[str, Any]:
    code = int(rec.get("exitCode") or 0)
    if rec.get("startError"):  # containerd: a process that never started is "exited" with 128
        return {"exitCode": 128, "reason": "StartError", "message": rec["startError"],
                "startedAt": "1970-01-01T00:00:00Z", "finishedAt": rec.get("finishedAt") or rec.get("startedAt"),
                "containerID": cid}
    return {"exitCode": code, "reason": "Completed" if code == 0 else "Error", "startedAt": rec.get("startedAt"),
            "finishedAt": rec.get("finishedAt"), "containerID": cid}


def _rv(obj: dict[str, Any]) -> int:
    try:
        return int(obj["metadata"].get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0


class PodWorker:
    """Keeps one pod's containers and status in line with its spec."""

    def __init__(self, kubelet: Kubelet, pod: dict[str, Any]) -> None:
        self.kl = kubelet
        self.pod = pod
        self.uid: str = pod["metadata"]["uid"]
        self.gone = False
        self.sandbox: Sandbox | None = None
        self.volumes = Volumes(kubelet.node.names.pod_dir(self.uid), kubelet.node.names.pod_shm_dir(self.uid))
        self.volume_error = ""
        self.containers: dict[str, ContainerState] = {}
        self.adopted = False
        self.start_time: str | None = (pod.get("status") or {}).get("startTime")
        self.last_written: Any = None
        self.last_written_rv = 0
        self._wake = asyncio.Event()
        self._events: list[tuple[dict[str, Any], str, str, str]] = []
        self._in_sync = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self.task = asyncio.create_task(self._run(), name=f"pod-{pod['metadata']['name']}")

    # ---- triggers ----
    def update(self, pod: dict[str, Any]) -> None:
        if _rv(pod) and _rv(pod) < _rv(self.pod):
            return  # an older copy than one we already have (e.g. our own status write's response)
        self.pod = pod
        self._wake.set()

    def mark_gone(self) -> None:
        self.gone = True
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def wake_at(self, when: float) -> None:
        """Sync again at wall time `when` (the earliest such request wins)."""
        loop = asyncio.get_running_loop()
        if self._timer is not None and not self._timer.cancelled() and self._timer_at <= when:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = loop.call_later(max(0.0, when - time.time()) + 0.01, self._wake.set)

    # ---- loop ----
    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._in_sync = True
            try:
                finished = await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sync of pod %s failed; retrying", self.key)
                self.wake_at(time.time() + 1.0)
                finished = False
            finally:
                self._in_sync = False
                self._flush_events()
            if finished:
                break
        for c in self.containers.values():
            self._stop_probers(c)
        if self.kl.workers.get(self.uid) is self:
            del self.kl.workers[self.uid]

    @property
    def key(self) -> str:
        md = self.pod["metadata"]
        return f"{md.get('namespace')}/{md['name']}"

    def event(self, etype: str, reason: str, message: str, container: str | None = None) -> None:
        obj = {**self.pod, "apiVersion": "v1", "kind": "Pod"}
        if container:
            ephemeral = any(c.get("name") == container for c in (self.pod.get("spec") or {}).get("ephemeralContainers")
                            or [])
            obj["_fieldPath"] = f"spec.{'ephemeralContainers' if ephemeral else 'containers'}{{{container}}}"
        # Sent after this sync's status write: the status is what a waiting client needs first.
        self._events.append((obj, etype, reason, message))
        if not self._in_sync:  # e.g. a probe's result between syncs
            self._flush_events()

    def _flush_events(self) -> None:
        for ev in self._events:
            self.kl.recorder.event(*ev)
        self._events.clear()

    async def sync(self) -> bool:
        """One pass; True when the worker is done (pod gone or terminated and deleted)."""
        pod = self.pod
        if self.gone:
            await self._kill_all(0)
            await self._remove_sandbox()
            return True
        if pod["metadata"].get("deletionTimestamp"):
            await self._terminate()
            return True
        if not self.adopted:
            self._adopt()
        if system_pods.component_of(pod):
            # A process the supervisor runs (kube-proxy, a control-plane mirror pod): report it, run nothing.
            await self._write_status()
            self.wake_at(time.time() + SYSTEM_POD_REFRESH_SECONDS)
            return False
        if self.sandbox is None:
            try:
                self.sandbox = await self.kl.ensure_sandbox(pod)
            except SandboxConfigError as exc:
                # The pod stays Pending (ContainerCreating); kubelet's pod worker retries after its back-off.
                self.event("Warning", "FailedCreatePodSandBox", f"Failed to create pod sandbox: {exc}")
                await self._write_status()
                self.wake_at(time.time() + SANDBOX_RETRY_SECONDS)
                return False
        volumes_ready = await self._sync_volumes()
        for c in (pod.get("spec") or {}).get("containers") or []:
            if volumes_ready or self._state(c["name"]).running:
                await self._sync_container(c)
        for c in (pod.get("spec") or {}).get("ephemeralContainers") or []:
            st = self._state(c["name"])
            # An ephemeral container runs once and is never restarted (kubelet: restartPolicy Never).
            if volumes_ready and not st.ever_ran and st.record is None:
                await self._start_container(c, st, target=c.get("targetContainerName"))
        await self._write_status()
        return False

    async def _sync_volumes(self) -> bool:
        """Write the pod's volumes (again: a ConfigMap or Secret they show may have changed). False while one
        cannot be set up: its FailedMount event says why, and the containers wait in ContainerCreating."""
        assert self.sandbox is not None
        try:
            await asyncio.to_thread(self.volumes.sync, self.pod, self.kl.volume_sources, self.sandbox.ip)
        except VolumeError as exc:
            if str(exc) != self.volume_error:
                self.event("Warning", "FailedMount", str(exc))
            self.volume_error = str(exc)
            self.wake_at(time.time() + 2.0)
            return False
        self.volume_error = ""
        return True

    # ---- adoption after an agent restart ----
    def _adopt(self) -> None:
        self.adopted = True
        self.sandbox = self.kl.node.get_sandbox(self.pod)
        status, spec = self.pod.get("status") or {}, self.pod.get("spec") or {}
        api = {s["name"]: s for key in ("containerStatuses", "ephemeralContainerStatuses")
               for s in status.get(key) or []}
        for c in (spec.get("containers") or []) + (spec.get("ephemeralContainers") or []):
            name = c["name"]
            st = self.containers.setdefault(name, ContainerState(name))
            rec = self.kl.records.get(container_id(self.uid, name))
            if rec is None or self.sandbox is None:
                continue
            # Its state comes from the record now (running, or terminated until a restart is decided).
            st.record, st.ever_ran, st.waiting = rec, True, ("", "")
            meta = Path(self.sandbox.pod_dir) / "containers" / f"{name}.json"
            try:
                doc = json.loads(meta.read_text())
                st.restart_count = int(doc.get("restartCount") or 0)
                st.env = dict(doc.get("env") or {})
                st.security = Security.from_dict(doc.get("security") or {})
                st.working_dir = doc.get("workingDir")
            except (OSError, ValueError):
                st.restart_count = int(api.get(name, {}).get("restartCount") or 0)
            st.last_terminated = (api.get(name, {}).get("lastState") or {}).get("terminated")
            if not rec.get("running"):
                st.exit_time = st_mod.parse_time(rec.get("finishedAt")) or time.time()
                st.exited.set()
            log.info("adopted container %s of pod %s (running=%s)", name, self.key, rec.get("running"))

    # ---- containers ----
    def _state(self, name: str) -> ContainerState:
        return self.containers.setdefault(name, ContainerState(name))

    async def _sync_container(self, c: dict[str, Any]) -> None:
        name = c["name"]
        st = self._state(name)
        if st.running:
            self._ensure_probers(c, st)
            return
        if st.record is not None:  # it ran and exited
            self._stop_probers(st)
            policy = (self.pod.get("spec") or {}).get("restartPolicy") or "Always"
            if policy == "Never" or (policy == "OnFailure" and st.record.get("exitCode") == 0):
                return
            key = (self.uid, name)
            now = time.time()
            # The run that just ended becomes lastState (what `kubectl get pods` shows as "(10s ago)").
            st.last_terminated = terminated_state(st.record, st_mod.container_id(self.uid, name, st.restart_count))
            if self.kl.backoff.in_backoff_since(key, st.exit_time, now):
                duration = self.kl.backoff.get(key)
                st.waiting = ("CrashLoopBackOff", f"back-off {go_duration(duration)} restarting failed "
                                                  f"container={name} pod={pod_ref(self.pod)}")
                self.event("Warning", "BackOff", f"Back-off restarting failed container {name} in pod "
                                                 f"{pod_ref(self.pod)}", name)
                self.wake_at(st.exit_time + duration)
                return
            self.kl.backoff.next(key, now)
            st.restart_count += 1
            st.record = None
        await self._start_container(c, st)

    async def _start_container(self, c: dict[str, Any], st: ContainerState, target: str | None = None) -> None:
        """Start container `c`; `target` (an ephemeral container's targetContainerName) is the container whose
        PID namespace it joins."""
        assert self.sandbox is not None
        name, image = c["name"], c.get("image", "")
        if time.time() < st.retry_at:
            return  # a configuration error: tried again after a pause, not at every status write
        env = st_mod.container_env(self.pod, c, self.kl.services.items(), self.sandbox.ip)
        command, args = st_mod.container_command(c, env)
        workload = resolve_image(image, command, args)
        if isinstance(workload, ImageError):
            self._image_error(image, workload, st, name)
            return
        self.kl.pull_backoff.reset((self.uid, image))
        self.event("Normal", "Pulled", f'Container image "{image}" already present on machine', name)
        try:
            security = container_security(self.pod, c)
            sa_dir = None
            if (self.pod.get("spec") or {}).get("automountServiceAccountToken") is not False:
                sa_dir = await asyncio.to_thread(self.volumes.serviceaccount, self.pod, self.kl.volume_sources)
            mounts = self.volumes.mounts(self.pod, c, sa_dir)
        except (ConfigError, VolumeError) as exc:
            st.waiting = (ConfigError.reason, str(exc))
            self.event("Warning", "Failed", f"Error: {exc}", name)
            st.retry_at = time.time() + CONFIG_RETRY_SECONDS
            self.wake_at(st.retry_at)
            return
        for what in unenforced(self.pod, c):
            self.event("Warning", "NotEnforced", f"The embedded labkit node does not enforce {what}", name)
        st.env = self.kl.node.container_env(self.sandbox, env, bool(c.get("tty")))
        st.security, st.working_dir = security, c.get("workingDir")
        pid_target = None
        if target:
            target_state = self.containers.get(target)
            if target_state is None or not target_state.running or target_state.record is None:
                st.waiting = ("ContainerCreating", f"target container {target} is not running")
                self.wake_at(time.time() + 1.0)
                return
            pid_target = int(target_state.record["pid"])
        cid = container_id(self.uid, name)
        rec = await self.kl.node.start_container(self.sandbox, name, workload, env, restart_count=st.restart_count,
                                                 working_dir=c.get("workingDir"), nice=st_mod.cpu_nice(self.pod),
                                                 mounts=mounts, security=security, image_files=image_files(image),
                                                 tty=bool(c.get("tty")), stdin=bool(c.get("stdin")),
                                                 stdin_once=bool(c.get("stdinOnce")), pid_target=pid_target)
        seen = self.kl.records.get(cid)
        if seen is not None and seen.get("pid") == rec["pid"] and not seen.get("running"):
            rec = {**rec, **seen}  # it already exited (the exit event overtook the spawn reply)
        if rec.get("startError"):
            rec = {**rec, "running": False, "exitCode": 128}
        self.kl.records[cid] = rec
        st.record, st.ever_ran, st.waiting = rec, True, ("", "")
        st.started = st.ready = False
        st.exited = asyncio.Event()
        if not rec.get("running"):
            st.exit_time = time.time()
            st.exited.set()
        self.event("Normal", "Created", f"Created container: {name}", name)
        if rec.get("startError"):
            self.event("Warning", "Failed", f"Error: {rec['startError']}", name)
            if ((self.pod.get("spec") or {}).get("restartPolicy") or "Always") != "Never":
                st.waiting = ("RunContainerError", rec["startError"])
                st.last_terminated = terminated_state(rec, st_mod.container_id(self.uid, name, st.restart_count))
            self.wake()
            return
        self.event("Normal", "Started", f"Started container {name}", name)
        if rec.get("running"):
            self._ensure_probers(c, st)
        else:
            self.wake()

    def _image_error(self, image: str, err: ImageError, st: ContainerState, name: str) -> None:
        key = (self.uid, image)
        now = time.time()
        backoff = self.kl.pull_backoff
        if backoff.in_backoff_since_update(key, now):
            st.waiting = ("ImagePullBackOff", f'Back-off pulling image "{image}": {err.reason}: {err.message}')
            self.event("Normal", "BackOff", f'Back-off pulling image "{image}"', name)
            self.event("Warning", "Failed", "Error: ImagePullBackOff", name)
            duration, last = backoff.entries[key]
            self.wake_at(last + duration)
            return
        backoff.next(key, now)
        st.waiting = (err.reason, err.message)
        self.event("Normal", "Pulling", f'Pulling image "{image}"', name)
        self.event("Warning", "Failed", err.message, name)
        self.event("Warning", "Failed", f"Error: {err.reason}", name)
        self.wake_at(now + 1.0)  # kubelet's next sync shows ImagePullBackOff

    def on_exit(self, name: str, rec: dict[str, Any]) -> None:
        st = self.containers.get(name)
        if st is None or st.record is None or st.record.get("pid") != rec.get("pid"):
            return
        st.record = rec
        st.exit_time = time.time()
        st.ready = False
        self._stop_probers(st)
        st.exited.set()
        self._wake.set()

    # ---- probes ----
    def _ensure_probers(self, c: dict[str, Any], st: ContainerState) -> None:
        assert st.record is not None
        pid = st.record["pid"]
        if st.probers_for == pid:
            return
        self._stop_probers(st)
        st.probers_for = pid
        st.started = "startupProbe" not in c
        st.ready = st.started and "readinessProbe" not in c
        if "startupProbe" in c:
            self._spawn_prober(c, st, "startup")
        else:
            self._spawn_after_startup(c, st)

    def _spawn_after_startup(self, c: dict[str, Any], st: ContainerState) -> None:
        for kind in ("readiness", "liveness"):
            if f"{kind}Probe" in c:
                self._spawn_prober(c, st, kind)

    def _spawn_prober(self, c: dict[str, Any], st: ContainerState, kind: str) -> None:
        assert self.sandbox is not None
        probe = c[f"{kind}Probe"]
        sandbox = self.sandbox
        pid = st.record["pid"] if st.record else 0
        prober = Prober(self.kl.sockets,
                        lambda argv: self.kl.node.exec_argv(pid, argv, st.env, st.security, st.working_dir))

        def current() -> bool:
            return st.probers_for == pid and st.running

        def on_result(k: str, ok: bool) -> None:
            if not current():
                return
            if k == "readiness":
                st.ready = ok
                self._wake.set()
            elif k == "startup" and ok:
                st.started = True
                st.ready = "readinessProbe" not in c
                self._spawn_after_startup(c, st)
                self._wake.set()
            elif not ok:  # liveness or startup failed: restart the container
                self.event("Normal", "Killing", f"Container {c['name']} failed {k} probe, will be restarted",
                           c["name"])
                grace = int((self.pod.get("spec") or {}).get("terminationGracePeriodSeconds") or DEFAULT_GRACE)
                if probe.get("terminationGracePeriodSeconds") is not None:
                    grace = int(probe["terminationGracePeriodSeconds"])
                task = asyncio.create_task(self._stop_container(st, grace))
                self.kl.background.add(task)
                task.add_done_callback(self.kl.background.discard)

        def on_failure(k: str, message: str) -> None:
            if current():
                self.event("Warning", "Unhealthy", f"{k.capitalize()} probe failed: {message}", c["name"])

        async def once() -> Any:
            return await prober.run(probe, c, sandbox.ip)

        started = time.monotonic()
        task = asyncio.create_task(probe_loop(kind, probe, once, on_result, on_failure, started))
        st.probers.append(task)

    @staticmethod
    def _stop_probers(st: ContainerState) -> None:
        for t in st.probers:
            t.cancel()
        st.probers.clear()
        st.probers_for = None

    # ---- stopping ----
    async def _stop_container(self, st: ContainerState, grace: float) -> None:
        """SIGTERM, wait up to `grace` seconds, SIGKILL."""
        if not st.running:
            return
        await self.kl.node.kill_container(self.uid, st.name, signal.SIGTERM)
        try:
            await asyncio.wait_for(st.exited.wait(), grace)
            return
        except TimeoutError:
            pass
        if st.running:
            await self.kl.node.kill_container(self.uid, st.name, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(st.exited.wait(), 5)

    async def _kill_all(self, grace: float, announce: bool = False) -> None:
        for st in self.containers.values():
            self._stop_probers(st)
        running = [st for st in self.containers.values() if st.running]
        # Containers the zygote runs for this pod that the worker never adopted (e.g. a spec change).
        for cid, rec in list(self.kl.records.items()):
            uid, _, name = cid.partition("/")
            if uid == self.uid and rec.get("running") and name not in self.containers:
                extra = self._state(name)
                extra.record = rec
                running.append(extra)
        for st in running:
            if announce:
                self.event("Normal", "Killing", f"Stopping container {st.name}", st.name)
        await asyncio.gather(*(self._stop_container(st, grace) for st in running))

    async def _terminate(self) -> None:
        md, spec = self.pod["metadata"], self.pod.get("spec") or {}
        grace = md.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE)
        if not self.adopted:
            self._adopt()
        await self._kill_all(float(grace or 0), announce=True)
        await self._remove_sandbox()
        ns = md.get("namespace") or "default"
        try:
            await self.kl.client.delete("pods", md["name"], ns, grace_period_seconds=0,
                                        preconditions={"uid": self.uid})
        except (errors.NotFound, errors.Conflict):
            pass

    async def _remove_sandbox(self) -> None:
        await self.kl.remove_pod_state(self.uid)
        self.sandbox = None

    # ---- status ----
    def _container_status(self, c: dict[str, Any]) -> dict[str, Any]:
        name, image = c["name"], c.get("image", "")
        st = self._state(name)
        cid = st_mod.container_id(self.uid, name, st.restart_count)
        state: dict[str, Any]
        if st.running:
            assert st.record is not None
            state = {"running": {"startedAt": st.record.get("startedAt")}}
        elif st.record is not None and st.waiting == ("", ""):
            state = {"terminated": terminated_state(st.record, cid)}
        else:
            reason, message = st.waiting
            waiting = {"reason": reason or "ContainerCreating"}
            if message:
                waiting["message"] = message
            state = {"waiting": waiting}
        out: dict[str, Any] = {
            "name": name, "state": state,
            "lastState": {"terminated": st.last_terminated} if st.last_terminated else {},
            "ready": bool(st.running and st.ready), "restartCount": st.restart_count,
            "image": st_mod.runtime_image(image) if st.ever_ran else image,
            "imageID": st_mod.image_id(image) if st.ever_ran else "",
        }
        if st.ever_ran:
            out["containerID"] = cid if st.record is not None else \
                (st.last_terminated or {}).get("containerID", cid)
        out["started"] = bool(st.running and st.started)
        return out

    def compute_status(self) -> dict[str, Any]:
        pod = self.pod
        spec = pod.get("spec") or {}
        now = fmt_time()
        if system_pods.component_of(pod):
            return {**system_pods.status(self.kl.home, pod, now),
                    "qosClass": (pod.get("status") or {}).get("qosClass") or st_mod.qos_class(pod)}
        if self.start_time is None:
            self.start_time = now
        statuses = [self._container_status(c) for c in spec.get("containers") or []]
        ephemeral = [self._container_status(c) for c in spec.get("ephemeralContainers") or []]
        phase = st_mod.pod_phase(spec.get("restartPolicy") or "Always", statuses)
        old = pod.get("status") or {}
        status: dict[str, Any] = {
            "phase": phase,
            "conditions": st_mod.pod_conditions(pod, statuses, phase, self.sandbox is not None, now),
            "hostIP": st_mod.NODE_IP, "hostIPs": [{"ip": st_mod.NODE_IP}],
        }
        if self.sandbox is not None:
            status["podIP"] = self.sandbox.ip
            status["podIPs"] = [{"ip": self.sandbox.ip}]
        status["startTime"] = self.start_time
        status["containerStatuses"] = statuses
        if ephemeral:
            status["ephemeralContainerStatuses"] = ephemeral
        status["qosClass"] = old.get("qosClass") or st_mod.qos_class(pod)
        return status

    async def _write_status(self) -> None:
        status = self.compute_status()
        current = self.pod.get("status") or {}
        wanted = st_mod.normalized({**current, **status})
        if wanted == st_mod.normalized(current):
            return
        if wanted == self.last_written and _rv(self.pod) <= self.last_written_rv:
            return  # already written; the informer has not caught up yet
        md = self.pod["metadata"]
        try:
            new = await self.kl.client.patch("pods", md["name"], {"status": status}, md.get("namespace"),
                                             subresource="status")
        except errors.NotFound:
            return
        self.last_written, self.last_written_rv = wanted, _rv(new)
        if new.get("metadata", {}).get("uid") == self.uid:
            new.setdefault("apiVersion", "v1")
            new.setdefault("kind", "Pod")
            self.update(new)


class Kubelet:
    """The node agent of one embedded node."""

    def __init__(self, client: Client, node: Node, home: str | os.PathLike[str],
                 node_name: str = NODE_NAME, own_zygote: bool = True) -> None:
        self.client = client
        self.node = node
        self.home = Path(home)
        self.node_name = node_name
        self.own_zygote = own_zygote
        self.pods = Informer(client, "pods", field_selector=f"spec.nodeName={node_name}")
        self.services = Informer(client, "services")
        # ConfigMaps and Secrets for volumes (when the API server serves them).
        self.volume_informers: dict[str, Informer] = {}
        for plural in ("configmaps", "secrets"):
            with contextlib.suppress(KeyError):
                self.volume_informers[plural] = Informer(client, plural)
        self.volume_sources = Sources(configmap=self._volume_source("configmaps"),
                                      secret=self._volume_source("secrets"), token=self._token, ca_cert=self._ca_cert)
        self.recorder = KubeletRecorder(client, "kubelet", host=node_name)
        self.workers: dict[str, PodWorker] = {}
        self.records: dict[str, dict[str, Any]] = {}
        self.backoff = Backoff()
        self.pull_backoff = Backoff()
        self.background: set[asyncio.Task[Any]] = set()
        self.sockets: NetnsSockets | None = None
        self._accepting = False
        self.ready = asyncio.Event()

    # ---- start-up ----
    async def start(self) -> None:
        """Node network + zygote, informers, adoption, orphan cleanup; returns when pods are being handled."""
        await asyncio.to_thread(self.node.start, self.own_zygote)
        await asyncio.to_thread(ensure_private_dir, self.node.names.ns_dir)
        self.sockets = NetnsSockets(self.node.network.node_netns_path)
        self.records = {r["id"]: r for r in await self.node.zygote.list()}
        self._spawn(self._exit_events())
        self.pods.add_handler(self._on_pod)
        self._spawn(self.pods.run())
        self._spawn(self.services.run())
        for plural, informer in self.volume_informers.items():
            kind = {"configmaps": "configMap", "secrets": "secret"}[plural]
            informer.add_handler(lambda _t, obj, _o, kind=kind: self._on_volume_source(kind, obj))
            self._spawn(informer.run())
        await asyncio.gather(self.pods.wait_synced(), self.services.wait_synced(),
                             *(i.wait_synced() for i in self.volume_informers.values()))
        await self.remove_orphans()
        await self.ensure_mirror_pods()
        # The outside world's web hosts (203.0.113.10-12) run in the zygote too: in kind they would be
        # machines on the Docker network; here the node's runtime is the only one there is.
        await self.node.start_external_hosts()
        self._accepting = True
        for pod in self.pods.items():
            self._on_pod("ADDED", pod, None)
        self._spawn(self._heartbeat())
        self.ready.set()

    async def run(self) -> None:
        await self.start()
        await asyncio.Event().wait()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    # ---- pods ----
    def _on_pod(self, etype: str, pod: dict[str, Any], old: dict[str, Any] | None) -> None:
        if not self._accepting:
            return
        uid = pod["metadata"].get("uid", "")
        if old is not None and old["metadata"].get("uid") != uid:
            prev = self.workers.get(old["metadata"].get("uid", ""))
            if prev is not None:
                prev.mark_gone()
        worker = self.workers.get(uid)
        if etype == "DELETED":
            if worker is not None:
                worker.mark_gone()
            if (pod["metadata"].get("annotations") or {}).get(system_pods.MIRROR_ANNOTATION):
                self._spawn(self.ensure_mirror_pods())  # kubelet keeps its static pods' mirrors
            return
        if worker is None:
            worker = self.workers[uid] = PodWorker(self, pod)
        worker.update(pod)

    async def ensure_mirror_pods(self) -> None:
        """Create the control plane's mirror pods that are missing (owned by this node)."""
        try:
            node = await self.client.get("nodes", self.node_name)
        except errors.ApiError:
            return
        for pod in system_pods.mirror_pods(self.node_name, node["metadata"].get("uid", "")):
            if self.pods.get("kube-system", pod["metadata"]["name"]) is not None:
                continue
            with contextlib.suppress(errors.AlreadyExists, errors.NotFound, errors.Forbidden):
                await self.client.create(pod, namespace="kube-system")

    async def ensure_sandbox(self, pod: dict[str, Any]) -> Sandbox:
        existing = self.node.get_sandbox(pod)
        if existing is not None:
            return existing
        return await asyncio.to_thread(self.node.create_sandbox, pod)

    # ---- what the streaming server asks (labkit.node.streaming.PodRuntime) ----
    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.pods.get(namespace, name)

    def _container_state(self, pod: dict[str, Any], container: str) -> ContainerState | None:
        worker = self.workers.get(pod["metadata"].get("uid", ""))
        return worker.containers.get(container) if worker is not None else None

    def exec_target(self, pod: dict[str, Any], container: str) -> ExecTarget | None:
        st = self._container_state(pod, container)
        if st is None or not st.running:
            return None
        return ExecTarget(container_id(pod["metadata"]["uid"], container), dict(st.env), st.security.to_dict(),
                          st.working_dir, st_mod.cpu_nice(pod))

    def attach_target(self, pod: dict[str, Any], container: str) -> str | None:
        st = self._container_state(pod, container)
        return container_id(pod["metadata"]["uid"], container) if st is not None and st.running else None

    def log_source(self, pod: dict[str, Any], container: str, previous: bool) -> LogSource:
        """kubelet's validateContainerLogStatus: which run's log `kubectl logs [--previous]` reads.

        The single place that says where a container's output is: a system pod's is its component's log
        (labkit.node.system_pods.log_file, plain text); a container the node runs logs to
        `<pod dir>/logs/<container>/<restart count>.log` (CRI format)."""
        component_log = system_pods.log_file(self.home, pod)
        if component_log is not None:  # kube-proxy, the control plane: the supervised process's own log
            return LogSource(component_log, "raw")
        name = pod["metadata"]["name"]
        st = self._container_state(pod, container)
        folder = self.node.names.pod_dir(pod["metadata"]["uid"]) / "logs" / container
        if previous:
            if st is None or st.last_terminated is None:
                raise StreamError(400, f'previous terminated container "{container}" in pod "{name}" not found')
            run = st.restart_count - 1 if st.running else st.restart_count
            return LogSource(folder / f"{run}.log")
        if st is None or not st.ever_ran:
            reason = st.waiting[0] if st is not None and st.waiting[0] else "ContainerCreating"
            why = {"ErrImagePull": "image can't be pulled",
                   "ImagePullBackOff": "trying and failing to pull image"}.get(reason, reason)
            raise StreamError(400, f'container "{container}" in pod "{name}" is waiting to start: {why}')
        return LogSource(folder / f"{st.restart_count}.log")

    def pod_netns(self, pod: dict[str, Any]) -> str | None:
        sandbox = self.node.get_sandbox(pod)
        return sandbox.net_file if sandbox is not None else None

    def log_running(self, pod: dict[str, Any], container: str, source: LogSource) -> bool:
        if source.format == "raw":
            return True  # a component's log grows as long as the cluster runs
        st = self._container_state(pod, container)
        return st is not None and st.running and source.path.stem == str(st.restart_count)

    def _volume_source(self, plural: str) -> Any:
        def get(namespace: str, name: str) -> dict[str, Any] | None:
            informer = self.volume_informers.get(plural)
            return informer.get(namespace, name) if informer is not None else None

        return get

    def _token(self) -> str:
        return (self.home / "pki" / "serviceaccount.token").read_text().strip()

    def _ca_cert(self) -> str:
        return (self.home / "pki" / "ca.crt").read_text()

    def _on_volume_source(self, kind: str, obj: dict[str, Any]) -> None:
        """A ConfigMap or Secret changed: the pods whose volumes show it write them again."""
        md = obj["metadata"]
        key = (kind, md.get("name", ""))
        for worker in list(self.workers.values()):
            if (worker.pod["metadata"].get("namespace") or "default") == (md.get("namespace") or "default") and \
                    key in volume_references(worker.pod):
                worker.wake()

    async def remove_pod_state(self, uid: str) -> None:
        """Kill what still runs of pod `uid`, forget its containers, remove its sandbox."""
        for cid, rec in list(self.records.items()):
            if cid.startswith(uid + "/"):
                if rec.get("running"):
                    with contextlib.suppress(Exception):
                        await self.node.zygote.kill(cid, signal.SIGKILL)
                with contextlib.suppress(Exception):
                    await self.node.zygote.forget(cid)
                self.records.pop(cid, None)
        await asyncio.to_thread(self.node.remove_sandbox, uid)

    async def remove_orphans(self) -> None:
        """Sandboxes and containers of pods that no longer exist (deleted while the agent was down)."""
        live = {p["metadata"].get("uid") for p in self.pods.items()}
        uids = {cid.partition("/")[0] for cid in self.records if not cid.startswith("ext/")}
        pods_dir = self.node.names.node_dir / "pods"
        if pods_dir.exists():
            uids |= {d.name for d in pods_dir.iterdir()}
        uids |= set(self.node.sandboxes.ipam.allocations.values())
        for uid in uids - live:
            log.info("removing the sandbox of pod %s, which no longer exists", uid)
            await self.remove_pod_state(uid)

    async def _exit_events(self) -> None:
        """Follow the zygote's exit notifications (reconnecting if the stream breaks)."""
        first = True
        while True:
            try:
                async for ev in self.node.zygote.events():
                    if ev.get("event") == "subscribed":
                        if not first:
                            await self._after_zygote_restart()
                        first = False
                    elif ev.get("event") == "exited":
                        self._exited({k: v for k, v in ev.items() if k != "event"})
            except (OSError, ValueError, ConnectionError) as exc:
                log.warning("zygote event stream broke (%s); reconnecting", exc)
            await asyncio.sleep(0.5)

    def _exited(self, rec: dict[str, Any]) -> None:
        cid = rec["id"]
        self.records[cid] = rec
        uid, _, name = cid.partition("/")
        worker = self.workers.get(uid)
        if worker is not None:
            worker.on_exit(name, rec)

    async def _after_zygote_restart(self) -> None:
        """The stream came back: containers the zygote no longer runs died with the one before (as containers
        die with their runtime), and the outside world's hosts it ran start again."""
        now = {r["id"]: r for r in await self.node.zygote.list()}
        for cid, rec in list(self.records.items()):
            current = now.get(cid)
            if rec.get("running") and (current is None or current.get("pid") != rec.get("pid")):
                log.warning("container %s is gone with the zygote that ran it", cid)
                self._exited({**rec, "running": False, "exitCode": 137, "signal": signal.SIGKILL,
                              "finishedAt": fmt_time()})
            elif current is not None and rec.get("running") and not current.get("running"):
                self._exited(current)
        await self.node.start_external_hosts()

    # ---- node status ----
    async def _heartbeat(self) -> None:
        while True:
            try:
                await self.post_node_status()
            except (errors.ApiError, errors.ClusterError) as exc:
                log.warning("node status not posted: %s", exc)
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def post_node_status(self) -> dict[str, Any]:
        from labkit.backends import bootstrap

        try:
            node = await self.client.get("nodes", self.node_name)
        except errors.NotFound:
            node = await self.client.create(bootstrap.node())
        now = fmt_time()
        base = bootstrap.node_status(True, "KubeletReady", "kubelet is posting ready status", now)
        current = node.get("status") or {}
        old = {c.get("type"): c for c in current.get("conditions") or []}
        wanted = [("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                  ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                  ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                  ("Ready", "True", "KubeletReady", "kubelet is posting ready status")]
        conditions = []
        for ctype, value, reason, message in wanted:
            prev = old.get(ctype) or {}
            transition = prev.get("lastTransitionTime") if prev.get("status") == value else None
            conditions.append({"type": ctype, "status": value, "lastHeartbeatTime": now,
                               "lastTransitionTime": transition or now, "reason": reason, "message": message})
        # What bootstrap (or an earlier agent) wrote, where it is not empty; the machine's facts win.
        written = {k: v for k, v in (current.get("nodeInfo") or {}).items() if v}
        info = {**base["nodeInfo"], **written, **_node_info()}
        patch = {"status": {"conditions": conditions, "addresses": base["addresses"], "nodeInfo": info,
                            "capacity": current.get("capacity") or base["capacity"],
                            "allocatable": current.get("allocatable") or base["allocatable"],
                            "daemonEndpoints": base["daemonEndpoints"]}}
        return await self.client.patch("nodes", self.node_name, patch, subresource="status")


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _node_info() -> dict[str, str]:
    """What kubelet learns from the machine (cadvisor's MachineInfo)."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    machine = _read("/etc/machine-id") or boot.replace("-", "")
    return {"kernelVersion": platform.release(), "bootID": boot, "machineID": machine,
            "systemUUID": _read("/sys/class/dmi/id/product_uuid") or boot}
