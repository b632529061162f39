"""Benchmark of the embedded API server (issue "Embedded cluster 1/5").

    .venv/bin/python bench/bench_apiserver.py [--ups 5] [--creates 300] [--services 1000]

Prints, with the targets in brackets:
- `labkit up` until the API answers: median          [≤ 1 s]
- create a Service through HTTPS: median             [≤ 5 ms]   (back to back, and paced one every 50 ms)
- list 1,000 Services as a Table (kubectl's Accept)  [≤ 100 ms]
- a write seen by a watch: p99                       [≤ 10 ms]  (back to back, and paced)
- where the API server also listens on its Unix socket (`<home>/apiserver.sock`, used by the cluster's own
  components): create median and watch p99 over it as well, for comparison with HTTPS
- in process, no cluster: normalising a running pod (the decode/encode round trip every write and read pays)
  [≤ 0.5 ms] and defaulting + validating a Service [≤ 1 ms], per call
The load average is printed too: on a shared 2-CPU machine the figures move with it.
Everything runs against real clusters in temporary LABKIT_HOMEs over loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labkit.apiserver.defaults import apply_defaults
from labkit.apiserver.normalize import normalize
from labkit.apiserver.validation import validate
from labkit.backends import embedded
from labkit.client import Client
from labkit.kinds import lookup
from tests.unit.test_normalize import running_pod
from tests.unit.test_validation import service

PACE = 0.05  # seconds between paced writes
PACED = 100
WATCHED = 200
TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def bench_up(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp) / "home"
            start = time.perf_counter()
            embedded.up(home)
            times.append(time.perf_counter() - start)
            embedded.down(home)
    return times


def _svc(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}}


async def bench_unix(kubeconfig: Path, socket_path: Path, creates: int) -> dict[str, float]:
    """Create median and watch p99 over the Unix socket the cluster's own components use."""
    results: dict[str, float] = {}
    async with Client.from_kubeconfig(kubeconfig, unix_socket=str(socket_path)) as client:
        times = []
        for i in range(creates):
            start = time.perf_counter()
            await client.create(_svc(f"u{i}"))
            times.append(time.perf_counter() - start)
        results["create median ms over the Unix socket (back to back)"] = statistics.median(times) * 1000
        latencies: list[float] = []
        sent: dict[str, float] = {}
        _, rv = await client.list("services", "default", field_selector="metadata.name=none")

        async def watcher() -> None:
            async for ev in client.watch("services", "default", resource_version=rv):
                name = ev.object["metadata"]["name"]
                if ev.type == "ADDED" and name in sent:
                    latencies.append(time.perf_counter() - sent[name])
                    if len(latencies) == WATCHED:
                        return

        task = asyncio.create_task(watcher())
        await asyncio.sleep(0.1)
        for i in range(WATCHED):
            name = f"uw{i}"
            sent[name] = time.perf_counter()
            await client.create(_svc(name))
        await asyncio.wait_for(task, 30)
        results["watch latency p99 ms over the Unix socket (back to back)"] = pct(latencies, 99) * 1000
    return results


async def bench_api(kubeconfig: Path, creates: int, services: int) -> dict[str, float]:
    results: dict[str, float] = {}
    async with Client.from_kubeconfig(kubeconfig) as client:
        create_times = []
        for i in range(creates):
            start = time.perf_counter()
            await client.create(_svc(f"c{i}"))
            create_times.append(time.perf_counter() - start)
        results["create median ms"] = statistics.median(create_times) * 1000
        results["create p99 ms"] = pct(create_times, 99) * 1000
        # Back to back, each create also waits for the previous ones' ripples: the controllers write Endpoints
        # and an EndpointSlice, the IPVS agent and both DNS replicas react. Paced creates see an idle cluster,
        # like a user's single `kubectl create`.
        paced = []
        for i in range(PACED):
            await asyncio.sleep(PACE)
            start = time.perf_counter()
            await client.create(_svc(f"p{i}"))
            paced.append(time.perf_counter() - start)
        results[f"create median ms, paced (one every {PACE * 1000:.0f} ms)"] = statistics.median(paced) * 1000
        for i in range(creates, services - PACED):
            await client.create(_svc(f"c{i}"))
        list_times = []
        for _ in range(10):
            start = time.perf_counter()
            async with client.session.get(client.server + "/api/v1/namespaces/default/services?limit=500",
                                          headers={"Accept": TABLE_ACCEPT}) as resp:
                await resp.read()
            list_times.append(time.perf_counter() - start)
        # kubectl pages by 500; the full listing is the two pages together (or one unpaged request).
        full_times = []
        for _ in range(5):
            start = time.perf_counter()
            async with client.session.get(client.server + "/api/v1/namespaces/default/services",
                                          headers={"Accept": TABLE_ACCEPT}) as resp:
                body = await resp.json()
            full_times.append(time.perf_counter() - start)
        results[f"list all {len(body['rows'])} services as one Table, median ms"] = statistics.median(full_times) * 1000
        results["list 500 (one kubectl page) median ms"] = statistics.median(list_times) * 1000

        latencies: list[float] = []
        seen = asyncio.Event()
        sent: dict[str, float] = {}

        async def watcher(rv: str, expected: int) -> None:
            async for ev in client.watch("services", "default", resource_version=rv):
                name = ev.object["metadata"]["name"]
                if name in sent and ev.type == "ADDED":
                    latencies.append(time.perf_counter() - sent[name])
                    if len(latencies) == expected:
                        seen.set()
                        return

        for label, pace, prefix in (("back to back", 0.0, "w"), (f"paced, one every {PACE * 1000:.0f} ms", PACE, "v")):
            latencies.clear()
            seen.clear()
            _, rv = await client.list("services", "default", field_selector="metadata.name=none")
            task = asyncio.create_task(watcher(rv, WATCHED))
            await asyncio.sleep(0.1)
            for i in range(WATCHED):
                if pace:
                    await asyncio.sleep(pace)
                name = f"{prefix}{i}"
                sent[name] = time.perf_counter()
                await client.create(_svc(name))
            await asyncio.wait_for(seen.wait(), 30)
            task.cancel()
            results[f"watch latency p50 ms ({label})"] = pct(latencies, 50) * 1000
            results[f"watch latency p99 ms ({label})"] = pct(latencies, 99) * 1000
    return results


def per_call_ms(fn: Callable[[], object], runs: int = 2000) -> float:
    start = time.perf_counter()
    for _ in range(runs):
        fn()
    return (time.perf_counter() - start) / runs * 1e3


def bench_in_process() -> None:
    pod, svc = running_pod(), service()
    pod_kind, svc_kind = lookup("pods"), lookup("services")

    def default_and_validate() -> None:
        obj = copy.deepcopy(svc)
        apply_defaults(svc_kind, obj)
        assert validate(svc_kind, obj) == []

    print(f"normalise a running pod: {per_call_ms(lambda: normalize(pod_kind, pod)):.3f} ms per call   "
          "[target ≤ 0.5 ms]")
    print(f"default + validate a Service: {per_call_ms(default_and_validate):.3f} ms per call   [target ≤ 1 ms]")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ups", type=int, default=5)
    parser.add_argument("--creates", type=int, default=300)
    parser.add_argument("--services", type=int, default=1000)
    args = parser.parse_args()
    bench_in_process()
    ups = bench_up(args.ups)
    print(f"labkit up until the API answers: median {statistics.median(ups):.3f} s "
          f"(min {min(ups):.3f}, max {max(ups):.3f}, n={len(ups)})   [target ≤ 1 s]")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        paths, _ = embedded.up(home)
        try:
            results = asyncio.run(bench_api(paths.kubeconfig, args.creates, args.services))
            if (home / "apiserver.sock").exists():
                results.update(asyncio.run(bench_unix(paths.kubeconfig, home / "apiserver.sock", args.creates)))
        finally:
            embedded.down(home)
    for key, value in results.items():
        target = "≤ 5" if key.startswith("create median") else "≤ 10" if key.startswith("watch latency p99") \
            else "≤ 100" if key.startswith("list all") else ""
        print(f"{key}: {value:.2f}" + (f"   [target {target}]" if target else ""))
    load = os.getloadavg()
    print(f"(load average during the run: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
