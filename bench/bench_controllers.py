"""Benchmark of the controllers that turn Services and Pods into Endpoints and EndpointSlices.

    .venv/bin/python bench/bench_controllers.py [--scales 10] [--services 1000] [--pods-per-service 3]
                                                [--rounds 3] [--py-spy DIR]

Prints, with the targets in brackets:
- `kubectl scale deploy --replicas=2` until both endpoints are listed: median    [≤ 50 ms]
  (measured from the scale request; with the real kubectl when it is installed, also from its start, with its
  own run time and the start-up of a kubectl run that sends nothing printed apart: a Go binary of kubectl's size
  takes 60-70 ms to start on these machines, whatever the server does)
- 1,000 Services with 3 ready pods each reconciled: every Endpoints and EndpointSlice correct   [≤ 5 s]
  The target applies to reconciliation itself: 1,000 stored Services taken up by the controller manager, paused
  with SIGSTOP while they are stored and then resumed (as after a restart); median of `--rounds` rounds, each
  round's Services deleted before the next. Printed for context without a target: the same from the first
  create while 1,000 Services are created through the API (16 concurrent requests), creation included.
- the CPU time each of the cluster's processes spent on that, per Service (from /proc, user + system)

The controllers are isolated from the node agent: the pods name a scheduler that does not exist
(`schedulerName: labkit-bench-none`), so they are never bound and no kubelet runs them; this benchmark plays the
kubelet and marks each new pod Running and Ready with a podIP through the pods/status subresource.
The pod IPs are only data in the API; no packet is sent anywhere.
Everything runs against a real embedded cluster in a temporary LABKIT_HOME.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from labkit.backends import embedded
from labkit.client import Client

NS = "bench"
_TICK = os.sysconf("SC_CLK_TCK")
# Which cluster process a command line belongs to, first match wins.
_COMPONENTS = (("labkit.apiserver", "apiserver"), ("labkit.controllers", "controllers"),
               ("labkit.agent", "ipvs-agent"), ("labkit.dns", "dns"), ("labkit.node", "node"))
NO_SCHEDULER = "labkit-bench-none"
_ip_counter = itertools.count(1)


def next_pod_ip() -> str:
    n = next(_ip_counter)
    return f"10.244.{n // 250 + 1}.{n % 250 + 1}"


def cluster_processes(home: Path) -> dict[int, str]:
    """The cluster's component processes (the supervisor's descendants), pid → component label."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    try:
        todo = [int((home / "run" / "supervisor.pid").read_text())]
    except (OSError, ValueError):
        return {}
    out: dict[int, str] = {}
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            label = next((name for marker, name in _COMPONENTS if marker in cmdline), None)
            if label:
                out[pid] = label
    return out


def cluster_cpu(home: Path) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each component of the cluster."""
    out: dict[str, float] = {}
    for pid, label in cluster_processes(home).items():
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[label] = out.get(label, 0.0) + (int(fields[11]) + int(fields[12])) / _TICK
    return out


@contextlib.contextmanager
def py_spy(home: Path, out_dir: Path | None, phase: str) -> Iterator[None]:
    """With `--py-spy DIR`: sample every component with py-spy during the block (raw flame graph files)."""
    if out_dir is None:
        yield
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    procs = [subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "100", "--format", "raw",
                               "--output", str(out_dir / f"{phase}-{label}-{pid}.txt")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for pid, label in cluster_processes(home).items()]
    try:
        yield
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for proc in procs:
            proc.wait()


def _container() -> dict:
    return {"name": "web", "image": "nginx:1.19", "ports": [{"containerPort": 80}]}


def _pod(name: str, app: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS, "labels": {"app": app}},
            "spec": {"schedulerName": NO_SCHEDULER, "containers": [_container()]}}


def _service(name: str, app: str | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
            "spec": {"selector": {"app": app or name}, "ports": [{"port": 80, "targetPort": 80}]}}


def _ready_status(ip: str) -> dict:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "conditions": [
        {"type": t, "status": "True", "lastTransitionTime": now}
        for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")]}}


async def mark_ready(client: Client, name: str) -> str:
    ip = next_pod_ip()
    await client.patch("pods", name, _ready_status(ip), namespace=NS, subresource="status")
    return ip


class EndpointState:
    """Endpoints and EndpointSlices of the namespace as two watches report them, with a change signal."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.endpoints: dict[str, dict] = {}
        self.slices: dict[str, dict] = {}
        # slice names by Service: checking one Service must not scan every slice (1,000 Services x 2,000 events
        # made this benchmark's own CPU compete with the cluster it measures)
        self.slices_by_service: dict[str, set[str]] = {}
        self.changed = asyncio.Event()
        self.on_change: Callable[[str, str], None] | None = None  # (kind, service name)
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        for resource, store in (("endpoints", self.endpoints), ("endpointslices", self.slices)):
            _, rv = await self.client.list(resource, NS)
            self._tasks.append(asyncio.create_task(self._watch(resource, store, rv)))

    async def _watch(self, resource: str, store: dict[str, dict], rv: str) -> None:
        async for ev in self.client.watch(resource, NS, resource_version=rv):
            if ev.type == "BOOKMARK":
                continue
            name = ev.object["metadata"]["name"]
            if ev.type == "DELETED":
                store.pop(name, None)
            else:
                store[name] = ev.object
            service = name if resource == "endpoints" else \
                (ev.object["metadata"].get("labels") or {}).get("kubernetes.io/service-name", "")
            if resource == "endpointslices":
                group = self.slices_by_service.setdefault(service, set())
                (group.discard if ev.type == "DELETED" else group.add)(name)
            if self.on_change:
                self.on_change(resource, service)
            self.changed.set()

    async def wait(self, condition: Callable[[], bool], timeout: float) -> None:
        deadline = time.perf_counter() + timeout
        while not condition():
            self.changed.clear()
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError("endpoints did not converge")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)

    def endpoints_ips(self, service: str) -> set[str]:
        ep = self.endpoints.get(service) or {}
        return {a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or []
                if any(p.get("port") == 80 for p in s.get("ports") or [])}

    def slice_ips(self, service: str) -> set[str]:
        out: set[str] = set()
        for name in self.slices_by_service.get(service, ()):
            sl = self.slices.get(name)
            if sl is None or (sl["metadata"].get("labels") or {}).get("kubernetes.io/service-name") != service:
                continue
            if not any(p.get("port") == 80 for p in sl.get("ports") or []):
                continue
            for e in sl.get("endpoints") or []:
                if (e.get("conditions") or {}).get("ready"):
                    out.update(e.get("addresses") or [])
        return out

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def kubelet_stand_in(client: Client, ips: dict[str, str]) -> None:
    """Mark every new pod of the namespace Running and Ready with a podIP, as a kubelet would."""
    async def mark(pod: dict) -> None:
        name = pod["metadata"]["name"]
        if name not in ips and not (pod.get("status") or {}).get("podIP"):
            ips[name] = ""
            ips[name] = await mark_ready(client, name)

    listed, rv = await client.list("pods", NS)
    for pod in listed:  # pods created before the watch began (the task may start after the Deployment)
        await mark(pod)
    async for ev in client.watch("pods", NS, resource_version=rv):
        if ev.type == "ADDED":
            await mark(ev.object)


def _kubectl() -> str | None:
    real = shutil.which("kubectl")
    if real is None:
        return None
    versioned = Path(os.path.realpath(real)).parent / "kubectl.1.32"
    return str(versioned) if versioned.exists() else real


async def bench_scale(client: Client, kubeconfig: Path, runs: int) -> dict[str, float]:
    """Deployment web (1 replica) + Service web; scale to 2 and wait for both addresses, `runs` times."""
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": NS},
              "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {
                  "metadata": {"labels": {"app": "web"}},
                  "spec": {"schedulerName": NO_SCHEDULER, "containers": [_container()]}}}}
    state = EndpointState(client)
    await state.start()
    ips: dict[str, str] = {}
    kubelet = asyncio.create_task(kubelet_stand_in(client, ips))
    await client.create(deploy)
    await client.create(_service("web"))

    def count(n: int) -> Callable[[], bool]:
        return lambda: len(state.endpoints_ips("web")) == n and len(state.slice_ips("web")) == n

    await state.wait(count(1), 30)
    api_times: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        await client.patch("deployments", "web", {"spec": {"replicas": 2}}, namespace=NS, subresource="scale")
        await state.wait(count(2), 30)
        api_times.append(time.perf_counter() - start)
        await client.patch("deployments", "web", {"spec": {"replicas": 1}}, namespace=NS, subresource="scale")
        await state.wait(count(1), 30)
    results = {"scale→both endpoints (API PATCH /scale) median ms": statistics.median(api_times) * 1000,
               "scale→both endpoints (API PATCH /scale) max ms": max(api_times) * 1000}

    kubectl = _kubectl()
    if kubectl and not os.environ.get("BENCH_NO_KUBECTL"):
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        cache = tempfile.mkdtemp(prefix="bench-kubectl-")
        args = [kubectl, f"--cache-dir={cache}", "-n", NS, "scale", "deploy", "web"]
        subprocess.run([*args, "--replicas=1"], env=env, capture_output=True, check=True)  # warm the cache
        total, own = [], []
        for _ in range(runs):
            start = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(*args, "--replicas=2", env=env,
                                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            await proc.wait()
            exited = time.perf_counter()
            await state.wait(count(2), 30)
            total.append(time.perf_counter() - start)
            own.append(exited - start)
            await client.patch("deployments", "web", {"spec": {"replicas": 1}}, namespace=NS, subresource="scale")
            await state.wait(count(1), 30)
        # A Go binary of kubectl's size takes tens of ms just to start here: time a run that makes no request.
        bare = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run([kubectl, "version", "--client"], capture_output=True, check=True)
            bare.append(time.perf_counter() - start)
        shutil.rmtree(cache, ignore_errors=True)
        startup = statistics.median(bare)
        results["kubectl scale→both endpoints median ms (with kubectl's start-up)"] = statistics.median(total) * 1e3
        results["  of which the kubectl process itself, median ms"] = statistics.median(own) * 1000
        results["  a kubectl run that sends no request (version --client), median ms"] = startup * 1000
        results["kubectl scale→both endpoints less kubectl's bare start-up, median ms"] = (
            statistics.median(t - startup for t in total) * 1000)
    kubelet.cancel()
    await asyncio.gather(kubelet, return_exceptions=True)
    await state.stop()
    await client.delete("services", "web", NS)
    await client.delete("deployments", "web", NS)
    return results


async def _bounded(coros: list, limit: int) -> list:
    sem = asyncio.Semaphore(limit)

    async def one(coro):  # type: ignore[no-untyped-def]
        async with sem:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))


async def bench_many(client: Client, services: int, per_service: int, home: Path, rounds: int = 3,
                     profile: Path | None = None) -> dict[str, float]:
    """`services` Services over `per_service` ready pods each: time until all Endpoints/Slices are correct."""
    names = [f"s{i}" for i in range(services)]
    start = time.perf_counter()
    await _bounded([client.create(_pod(f"{svc}-{j}", svc)) for svc in names for j in range(per_service)], 16)
    pod_ips = await _bounded([mark_ready(client, f"{svc}-{j}") for svc in names for j in range(per_service)], 16)
    setup = time.perf_counter() - start
    expected = {svc: set(pod_ips[i * per_service:(i + 1) * per_service]) for i, svc in enumerate(names)}
    await asyncio.sleep(1.0)  # let the controllers digest the pod events before the clock starts

    state = EndpointState(client)
    await state.start()
    good_ep: set[str] = set()
    good_slice: set[str] = set()
    done = asyncio.Event()

    def check(resource: str, svc: str) -> None:
        if svc not in expected:
            return
        if resource == "endpoints":
            (good_ep.add if state.endpoints_ips(svc) == expected[svc] else good_ep.discard)(svc)
        else:
            (good_slice.add if state.slice_ips(svc) == expected[svc] else good_slice.discard)(svc)
        if len(good_ep) == len(good_slice) == services:
            done.set()

    state.on_change = check
    with py_spy(home, profile, "creating"):
        cpu_before = cluster_cpu(home)
        start = time.perf_counter()
        await _bounded([client.create(_service(svc)) for svc in names], 16)
        created = time.perf_counter() - start
        await asyncio.wait_for(done.wait(), 120)
        total = time.perf_counter() - start
    await asyncio.sleep(1.0)  # let the agent and DNS finish their share before reading the CPU counters
    cpu_after = cluster_cpu(home)
    results = {f"setup: {services * per_service} pods created and marked ready s": setup,
               f"{services} services created (16 concurrent requests) s": created,
               f"{services} services × {per_service} pods: all Endpoints+EndpointSlices correct s": total}
    for label in sorted(cpu_after):
        used = cpu_after[label] - cpu_before.get(label, 0.0)
        results[f"  CPU per Service (incl. the 1 s after), {label} ms"] = used / services * 1000

    # The same work as pure reconciliation from stored state: the controller manager is paused while
    # another `services` Services over the same pods are stored, then resumed (as after a restart). Several
    # rounds (each round's Services deleted before the next), as this machine's speed drifts from run to run.
    manager_pid = int((home / "run" / "controller-manager.pid").read_text())
    times: list[float] = []
    cpu_used: dict[str, float] = {}
    for round_no in range(rounds):
        again = {f"r{round_no}-{i}": expected[svc] for i, svc in enumerate(names)}
        good_ep.clear()
        good_slice.clear()
        done.clear()

        def check_again(resource: str, svc: str, again: dict[str, set[str]] = again) -> None:
            if svc not in again:
                return
            ips = state.endpoints_ips(svc) if resource == "endpoints" else state.slice_ips(svc)
            good = good_ep if resource == "endpoints" else good_slice
            (good.add if ips == again[svc] else good.discard)(svc)
            if len(good_ep) == len(good_slice) == services:
                done.set()

        state.on_change = check_again
        os.kill(manager_pid, signal.SIGSTOP)
        try:
            await _bounded([client.create(_service(name, svc)) for name, svc in zip(again, names, strict=True)], 16)
        finally:
            with py_spy(home, profile, f"reconciling-{round_no}"):
                os.kill(manager_pid, signal.SIGCONT)
                cpu_before = cluster_cpu(home)
                cpu_before["this benchmark's own watches"] = time.process_time()
                start = time.perf_counter()
                await asyncio.wait_for(done.wait(), 120)
                times.append(time.perf_counter() - start)
        cpu_after = cluster_cpu(home)
        cpu_after["this benchmark's own watches"] = time.process_time()
        for label, value in cpu_after.items():
            cpu_used[label] = cpu_used.get(label, 0.0) + (value - cpu_before.get(label, 0.0)) / rounds
        state.on_change = None
        await _bounded([client.delete("services", name, NS) for name in again], 16)
        await state.wait(lambda again=again: not any(n in state.endpoints or state.slices_by_service.get(n)
                                                     for n in again), 120)
    label = f"{services} stored services × {per_service} pods reconciled by the resumed controller manager"
    results[f"{label}, median of {rounds} rounds s"] = statistics.median(times)
    results[f"{label}, slowest round s"] = max(times)
    for name in sorted(cpu_used):
        results[f"  CPU per round of that reconciliation, {name} s"] = cpu_used[name]
    await state.stop()
    return results


async def run(home: Path, kubeconfig: Path, scales: int, services: int, per_service: int, rounds: int,
              profile: Path | None) -> dict[str, float]:
    async with Client.from_kubeconfig(kubeconfig) as client:
        await client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        results = await bench_scale(client, kubeconfig, scales)
        results.update(await bench_many(client, services, per_service, home, rounds, profile))
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scales", type=int, default=10)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--pods-per-service", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of pure reconciliation (median printed)")
    parser.add_argument("--py-spy", type=Path, metavar="DIR",
                        help="sample each component with py-spy during the timed 1,000-Service phases (raw files)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        paths, _ = embedded.up(home)
        try:
            embedded.wait_usable(paths)  # measure a settled cluster, not one still starting its DNS pods
            results = asyncio.run(run(home, paths.kubeconfig, args.scales, args.services, args.pods_per_service,
                                          args.rounds, args.py_spy))
        finally:
            embedded.down(home)
    for key, value in results.items():
        target = ""
        if key.startswith(("scale→both endpoints (API PATCH /scale) median", "kubectl scale→both endpoints less")):
            target = "   [target ≤ 50 ms]"
        elif "reconciled by" in key and "median" in key:
            target = "   [target ≤ 5 s]"
        print(f"{key}: {value:.2f}{target}")
    load = os.getloadavg()
    print(f"(load average during the run: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
