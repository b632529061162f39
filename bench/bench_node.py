"""Benchmark of the embedded node: pod created → Running and Ready, 50 pods Running, node memory.

    python bench/bench_node.py [--samples 20] [--pods 50]

Starts a private embedded cluster (LABKIT_HOME in a temporary directory) and, unless the supervisor already
runs the node agent, a node agent beside it; removes everything afterwards. Memory is the PSS of every
node process: the agent, the zygote and all container processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labkit.backends import embedded
from labkit.client import Client
from labkit.node.cleanup import cluster_processes
from labkit.node.names import cluster_prefix

IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.52"


def pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bench": "node"}},
            "spec": {"containers": [{"name": "agnhost", "image": IMAGE, "args": ["netexec", "--http-port=8080"]}]}}


def ready(p: dict) -> bool:
    st = p.get("status") or {}
    return st.get("phase") == "Running" and any(c.get("type") == "Ready" and c.get("status") == "True"
                                                 for c in st.get("conditions") or [])


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def node_pids(home: Path, agent_pid: int | None) -> set[int]:
    """The node agent, the zygote and everything it forked (the containers of every pod)."""
    tree = _children()
    roots = [p for p in cluster_processes(cluster_prefix(home))
             if b"labkit.node.zygote" in Path(f"/proc/{p}/cmdline").read_bytes()
             and b"labkit.node.zygote" not in Path(f"/proc/{_ppid(p)}/cmdline").read_bytes()]
    pids: set[int] = set()
    while roots:
        pid = roots.pop()
        if pid not in pids:
            pids.add(pid)
            roots += tree.get(pid, [])
    if agent_pid:
        pids.add(agent_pid)
    try:  # the supervisor's node agent, when it runs one
        status = json.loads((home / "run" / "status.json").read_text())
        if status.get("node", {}).get("pid"):
            pids.add(int(status["node"]["pid"]))
    except (OSError, ValueError):
        pass
    return pids


async def wait_for(client: Client, ns: str, names: set[str], predicate, timeout: float = 60) -> dict[str, float]:
    """Watch pods until `predicate` holds for every name; return the time each first satisfied it."""
    seen: dict[str, float] = {}
    items, rv = await client.list("pods", ns)
    for p in items:
        if p["metadata"]["name"] in names and predicate(p):
            seen[p["metadata"]["name"]] = time.perf_counter()
    deadline = time.monotonic() + timeout
    while len(seen) < len(names):
        async for ev in client.watch("pods", ns, resource_version=rv, timeout_seconds=int(timeout)):
            rv = ev.object.get("metadata", {}).get("resourceVersion", rv)
            name = ev.object.get("metadata", {}).get("name")
            if name in names and name not in seen and ev.type != "DELETED" and predicate(ev.object):
                seen[name] = time.perf_counter()
            if len(seen) == len(names) or time.monotonic() > deadline:
                break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(names) - len(seen)} pods never got there")
    return seen


async def bench(kubeconfig: Path, home: Path, agent_pid: int | None, samples: int, count: int) -> dict:
    async with Client.from_kubeconfig(kubeconfig, user_agent="bench-node") as client:
        for name in ("bench-latency", "bench-scale"):
            await client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        deadline = time.monotonic() + 30
        while not any(c.get("type") == "Ready" and c.get("status") == "True" for c in (
                (await client.get("nodes", "labkit-control-plane")).get("status") or {}).get("conditions") or []):
            if time.monotonic() > deadline:
                raise TimeoutError("the node never became Ready")
            await asyncio.sleep(0.1)
        latencies = []
        for i in range(-1, samples):  # sample -1 warms up (first pod after the node started)
            name = f"lat-{i + 1}"
            start = time.perf_counter()
            waiter = asyncio.create_task(wait_for(client, "bench-latency", {name}, ready))
            await asyncio.sleep(0)
            await client.create(pod(name), "bench-latency")
            done = await waiter
            if i >= 0:
                latencies.append((done[name] - start) * 1000)
        await client.delete("namespaces", "bench-latency")  # measure memory with the 50 pods (+ coredns) only
        names = {f"scale-{i}" for i in range(count)}
        start = time.perf_counter()
        waiter = asyncio.create_task(wait_for(client, "bench-scale", names, ready, timeout=120))
        await asyncio.gather(*(client.create(pod(n), "bench-scale") for n in sorted(names)))
        done = await waiter
        all_running = max(done.values()) - start
        await asyncio.sleep(1.0)  # let the workloads settle before measuring memory
        pids = node_pids(home, agent_pid)
        memory_mb = sum(pss_kb(p) for p in pids) / 1024
        if os.environ.get("BENCH_VERBOSE"):
            for p in sorted(pids, key=pss_kb, reverse=True)[:8]:
                cmd = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ")[:100].decode(errors="replace")
                print(f"{pss_kb(p) / 1024:8.1f} MB  {p}  {cmd}", file=sys.stderr)
    return {"create_to_ready_ms": {"median": statistics.median(latencies), "min": min(latencies),
                                   "max": max(latencies), "samples": len(latencies)},
            f"{count}_pods_running_s": all_running, "node_processes": len(pids),
            "node_memory_pss_mb": memory_mb}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--pods", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="labkit-bench-node-") as tmp:
        home = Path(tmp) / "home"
        paths, _ = embedded.up(home, timeout=60)
        agent = None
        try:
            status = json.loads(paths.status_file.read_text())
            if "node" not in status:
                with open(paths.logs / "bench-node-agent.log", "ab") as log:
                    agent = subprocess.Popen([sys.executable, "-m", "labkit.node", "--kubeconfig",
                                              str(paths.kubeconfig), "--home", str(home)], stdout=log, stderr=log,
                                             env=os.environ.copy())
            result = asyncio.run(bench(paths.kubeconfig, home, agent.pid if agent else None, args.samples,
                                       args.pods))
        finally:
            if agent is not None:
                agent.kill()
                agent.wait()
            embedded.down(home)
    print(json.dumps(result, indent=1))
    lat, scale = result["create_to_ready_ms"]["median"], result[f"{args.pods}_pods_running_s"]
    print(f"pod create → Running+Ready median: {lat:.0f} ms (target ≤ 300 ms)")
    print(f"{args.pods} pods Running: {scale:.2f} s (target ≤ 10 s)")
    print(f"node memory (PSS, {result['node_processes']} processes): {result['node_memory_pss_mb']:.0f} MB "
          "(target ≤ 300 MB)")


if __name__ == "__main__":
    main()
