"""The node's sandboxes and workloads on real kernel objects (root, netns, veth, bridge, nftables).

Traffic to cluster addresses is only ever sent from inside a pod's namespaces (nsenter), never from the
host namespace.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from labkit.node import crilog
from labkit.node.cleanup import cluster_netns, cluster_processes
from labkit.node.images import resolve_image
from labkit.node.node import Node
from labkit.node.rootfs import Mount
from labkit.node.zygote import ZygoteClient

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "nsenter", "unshare", "nft")),
    reason="needs root and ip/nsenter/unshare/nft")

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.52"


class Box:
    """A sandbox and the first process of its main container."""

    def __init__(self, sandbox, pid: int) -> None:
        self.sandbox, self.pid = sandbox, pid

    def __getattr__(self, name: str):
        return getattr(self.sandbox, name)


def make_pod(name: str, namespace: str = "default", **spec) -> dict:
    return {"metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4())}, "spec": spec}


# The host's system Python: every container sees the host's /usr (read-only).
PYTHON = "/usr/bin/python3"


def in_pod(node: Node, sandbox, code: str) -> str:
    """Run Python `code` inside the pod's main container; return its stdout."""
    proc = subprocess.run(node.exec_argv(sandbox.pid, [PYTHON, "-c", code]), capture_output=True, text=True,
                          timeout=20)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


HTTP_GET = """
import socket, sys
host, port, path, method = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
for attempt in range(100):  # the server may still be binding its socket
    try:
        s = socket.create_connection((host, port), timeout=5)
        break
    except ConnectionRefusedError:
        import time; time.sleep(0.05)
s.sendall(f"{method} {path} HTTP/1.1\\r\\nHost: {host}\\r\\nConnection: close\\r\\n\\r\\n".encode())
data = b""
while chunk := s.recv(65536):
    data += chunk
sys.stdout.buffer.write(data)
"""

UDP_ASK = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.2)
for attempt in range(50):
    s.sendto(sys.argv[3].encode(), (sys.argv[1], int(sys.argv[2])))
    try:
        print(s.recv(2048).decode(), end=""); break
    except (TimeoutError, ConnectionRefusedError):
        pass
"""


def http(node, sandbox, host, port, path="/", method="GET") -> tuple[str, dict[str, str], str]:
    out = subprocess.run(node.exec_argv(sandbox.pid, [PYTHON, "-c", HTTP_GET, host, str(port), path, method]),
                         capture_output=True, timeout=20).stdout.decode()  # bytes: keep the CRLFs
    head, _, body = out.partition("\r\n\r\n")
    lines = head.split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return lines[0], headers, body


def udp(node, sandbox, host, port, msg) -> str:
    return subprocess.run(node.exec_argv(sandbox.pid, [PYTHON, "-c", UDP_ASK, host, str(port), msg]),
                          capture_output=True, text=True, timeout=20).stdout


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    home = tmp_path_factory.mktemp("labkit-home")
    node = Node(home)
    node.start()
    sa = home / "sa"
    sa.mkdir()
    for name, content in {"token": "tok123", "ca.crt": "CERT", "namespace": "default"}.items():
        (sa / name).write_text(content)
    sa_mount = [Mount(str(sa), "/var/run/secrets/kubernetes.io/serviceaccount", read_only=True)]
    pods = {
        "a": make_pod("pod-a"),
        "b": make_pod("pod-b"),
        "c": make_pod("web-7b54d48599-2j79v"),
        "d": make_pod("web-0", hostname="web-0", subdomain="nginx"),
    }
    boxes = {k: node.create_sandbox(p) for k, p in pods.items()}
    specs = {"a": ("busybox", ["sleep", "3600"], None), "b": (AGNHOST, None, ["netexec"]),
             "c": ("nginx:1.25.3", None, None), "d": (AGNHOST, None, ["serve-hostname", "--udp", "--http=false"])}

    async def start():
        for k, (image, command, args) in specs.items():
            rec = await node.start_container(boxes[k], "main", resolve_image(image, command, args), {"K": "v"},
                                             mounts=sa_mount if k == "a" else [])
            boxes[k] = Box(boxes[k], rec["pid"])
        await node.start_external_hosts()

    asyncio.run(start())
    yield node, boxes
    node.stop()


def test_pod_files_hostname_and_network(cluster):
    node, boxes = cluster
    a = boxes["a"]
    out = in_pod(node, a, "import socket; print(open('/etc/resolv.conf').read() + '|' + socket.gethostname())")
    assert out == ("search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\n"
                   "options ndots:5\n|pod-a\n")
    hosts = in_pod(node, boxes["d"], "print(open('/etc/hosts').read(), end='')")
    assert hosts.startswith("# Kubernetes-managed hosts file.\n")
    assert hosts.endswith(f"{boxes['d'].ip}\tweb-0.nginx.default.svc.cluster.local\tweb-0\n")
    sa = in_pod(node, a, "d='/var/run/secrets/kubernetes.io/serviceaccount/'; "
                         "print([open(d+f).read() for f in ('token','ca.crt','namespace')])")
    assert sa.strip() == "['tok123', 'CERT', 'default']"
    addrs = subprocess.run(node.exec_argv(a.pid, ["ip", "-4", "-o", "addr", "show", "eth0"]), capture_output=True,
                           text=True).stdout
    assert f"inet {a.ip}/24" in addrs
    assert len({b.ip for b in boxes.values()}) == 4
    # The host namespace knows nothing of the cluster.
    host_routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    for net in ("10.244.", "10.96.", "203.0.113.", "172.18."):
        assert net not in host_routes


def test_agnhost_netexec_http_and_udp_by_pod_ip(cluster):
    node, boxes = cluster
    a, b = boxes["a"], boxes["b"]
    status, _, body = http(node, a, b.ip, 8080, "/hostname")
    assert status == "HTTP/1.1 200 OK" and body == "pod-b"
    _, _, body = http(node, a, b.ip, 8080, "/clientip")
    assert body.startswith(a.ip + ":")
    status, _, body = http(node, a, b.ip, 8080, "/echo?msg=hi&code=418")
    assert status.startswith("HTTP/1.1 418") and body == "hi"
    _, _, body = http(node, a, b.ip, 8080, f"/dial?host={b.ip}&port=8081&protocol=udp&request=hostname&tries=2")
    assert json.loads(body) == {"responses": ["pod-b", "pod-b"]}
    assert udp(node, a, b.ip, 8081, "hostname") == "pod-b"
    assert udp(node, a, b.ip, 8081, "echo Hello") == "hello"  # netexec lower-cases what it receives
    assert udp(node, a, boxes["d"].ip, 9376, "x") == "web-0"  # serve-hostname --udp


def test_nginx_answers_like_nginx(cluster):
    node, boxes = cluster
    status, headers, body = http(node, boxes["a"], boxes["c"].ip, 80, "/")
    assert status == "HTTP/1.1 200 OK" and headers["Server"] == "nginx/1.25.3"
    assert "<h1>Welcome to nginx!</h1>" in body and headers["Content-Length"] == str(len(body))
    status, headers, body = http(node, boxes["a"], boxes["c"].ip, 80, "/", method="HEAD")
    assert status == "HTTP/1.1 200 OK" and body == "" and int(headers["Content-Length"]) > 600
    status, _, body = http(node, boxes["a"], boxes["c"].ip, 80, "/nope")
    assert status == "HTTP/1.1 404 Not Found" and "<hr><center>nginx/1.25.3</center>" in body


def test_outside_world_sees_the_node_address(cluster):
    node, boxes = cluster
    _, _, body = http(node, boxes["a"], "203.0.113.10", 80, "/")
    assert body == "web1.example.net"
    _, _, body = http(node, boxes["a"], "203.0.113.11", 80, "/clientip")
    assert body.startswith("172.18.0.2:")  # masqueraded by the node, like kind's ip-masq-agent


def test_container_exit_code_env_and_logs(cluster):
    node, boxes = cluster
    a = boxes["a"]

    async def run() -> dict:
        wl = resolve_image("busybox", ["sh", "-c", 'echo "out $K $HOSTNAME"; echo err >&2; exit 3'])
        await node.start_container(a.sandbox, "job", wl, {"K": "v1"}, restart_count=0)
        first = await node.zygote.wait_exit(f"{a.uid}/job")
        wl = resolve_image("busybox", ["sh", "-c", "echo second run; exit 0"])
        await node.start_container(a.sandbox, "job", wl, {}, restart_count=1)
        second = await node.zygote.wait_exit(f"{a.uid}/job")
        return {"first": first, "second": second}

    result = asyncio.run(run())
    assert result["first"]["exitCode"] == 3 and result["second"]["exitCode"] == 0
    first = list(crilog.records(node.log_path(a, "job", 0).read_bytes()))
    assert [(r.stream, r.partial, r.message) for r in first] == [("stdout", False, b"out v1 pod-a"),
                                                                 ("stderr", False, b"err")]
    assert crilog.render(list(crilog.records(node.log_path(a, "job", 1).read_bytes()))) == b"second run\n"


def test_pid_1_ignores_sigterm_without_a_handler_and_sigkill_reports_137(cluster):
    node, boxes = cluster

    async def run() -> tuple[bool, dict]:
        cid = f"{boxes['a'].uid}/main"  # `sleep 3600`, PID 1 of its container
        await node.zygote.kill(cid, signal.SIGTERM)
        try:
            await node.zygote.wait_exit(cid, timeout=1.0)
            survived = False
        except TimeoutError:
            survived = True
        await node.zygote.kill(cid, signal.SIGKILL)
        return survived, await node.zygote.wait_exit(cid)

    survived, rec = asyncio.run(run())
    assert survived  # as on kind: deleting such a pod waits out its grace period
    assert rec["exitCode"] == 137 and rec["signal"] == signal.SIGKILL


def snapshot(prefix: str) -> dict:
    mounts = [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if prefix in line]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return {"netns": cluster_netns(prefix), "mounts": mounts, "procs": cluster_processes(prefix),
            "host_links": sorted(line.split(":")[1].strip() for line in links.splitlines())}


def test_cleanup_after_sigkill_leaves_nothing(tmp_path, capsys):
    node = Node(tmp_path / "home")
    before = snapshot(node.names.prefix)
    assert before["netns"] == [] and before["procs"] == [] and before["mounts"] == []
    node.start()
    pods = [node.create_sandbox(make_pod(f"p{i}")) for i in range(10)]

    async def start() -> None:
        for i, sb in enumerate(pods):
            image, args = [(AGNHOST, ["netexec"]), ("nginx", None), ("busybox", ["sleep", "1000"])][i % 3]
            await node.start_container(sb, "main", resolve_image(image, None, args))
        client = ZygoteClient(node.names.zygote_socket)
        await client.ping()
        await client.close()

    asyncio.run(start())
    during = snapshot(node.names.prefix)
    assert len(during["netns"]) == 12 and len(during["procs"]) >= 11 and during["mounts"]
    assert during["host_links"] == before["host_links"]  # the host namespace gets no links
    pss = 0
    for pid in during["procs"]:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss += int(line.split()[1])
    with capsys.disabled():
        print(f"\n[node memory] 10 pods (4 netexec, 3 nginx, 3 sleep) + zygote: {len(during['procs'])} processes, "
              f"{pss / 1024:.1f} MB PSS")
    # Removing one sandbox kills its container and frees its namespace and IP.
    node.remove_sandbox(pods[0].uid)
    assert pods[0].netns not in cluster_netns(node.names.prefix)
    assert node.sandboxes.ipam.ip_of(pods[0].uid) is None
    assert len(cluster_processes(node.names.prefix)) == len(during["procs"]) - 1
    # Simulate a crash: everything of the cluster dies at once, then the next `up` cleans up.
    for pid in during["procs"]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    report = Node(tmp_path / "home").stop()
    assert len(report.netns) == 11
    assert snapshot(node.names.prefix) == before


async def session_output(session, stdin: list[bytes] = (), close_stdin: bool = False) -> tuple[dict, bytes, bytes]:
    """Feed `stdin` frames, optionally close stdin, then collect (exit, stdout, stderr) until the exit frame."""
    from labkit.node.shim import CLOSE, EXIT, STDERR, STDIN, STDOUT

    for data in stdin:
        await session.send(STDIN, data)
    if close_stdin:
        await session.send(CLOSE, bytes([STDIN]))
    out, err, end = b"", b"", {}
    async for channel, payload in session.frames():
        if channel == STDOUT:
            out += payload
        elif channel == STDERR:
            err += payload
        elif channel == EXIT:
            end = json.loads(payload)
    session.close()
    return end, out, err


def test_exec_sessions_exit_codes_terminal_and_missing_program(cluster):
    from labkit.node.security import Security
    from labkit.node.zygote import SessionError

    node, boxes = cluster
    b = boxes["b"]
    cid = f"{b.uid}/main"
    base = {"op": "exec", "id": cid, "env": {"PATH": "/usr/bin:/bin"}, "security": Security().to_dict()}

    async def run() -> tuple:
        plain = await node.zygote.session({**base, "argv": ["sh", "-c", "echo out; ps -o pid= -e | wc -l; "
                                                                         "echo err >&2; exit 3"]})
        plain_result = await session_output(plain)
        term = await node.zygote.session({**base, "argv": ["sh", "-c", "tty; sleep 15"], "tty": True, "stdin": True})
        from labkit.node.shim import CLOSE, STDIN, STDOUT

        seen = b""
        async for channel, payload in term.frames():
            seen += payload if channel == STDOUT else b""
            if b"/dev/pts/" in seen:
                break
        term_result = await session_output(term, [b"\x03"])
        try:
            await node.zygote.session({**base, "argv": ["nosuchprogram"]})
            missing = ""
        except SessionError as exc:
            missing = str(exc)
        fed = await node.zygote.session({**base, "argv": ["sh", "-c", "read x; echo got $x"], "stdin": True})
        fed_result = await session_output(fed, [b"hi\n"], close_stdin=True)
        # stdin that comes after the process ended (the zygote has closed the session) goes nowhere, quietly
        late = await node.zygote.session({**base, "argv": ["true"], "stdin": True})
        late_frames = [frame async for frame in late.frames()]
        await late.reader.read()  # the zygote's end of the connection is closed
        await late.send(STDIN, b"too late\n")
        await late.send(CLOSE, bytes([STDIN]))
        late.close()
        return plain_result, seen, term_result, missing, fed_result, late_frames

    (end, out, err), seen, (term_end, _, _), missing, (fed_end, fed_out, _), late = asyncio.run(run())
    assert end["exitCode"] == 3 and err == b"err\n"
    # The exec'd shell sees its container's processes only: netexec (PID 1), itself, ps, wc.
    assert out.split() == [b"out", b"4"]
    assert seen.startswith(b"/dev/pts/0")  # a terminal of the container's own devpts
    assert term_end["exitCode"] == 130  # ^C reached the foreground `sleep` through the terminal
    assert missing == ('OCI runtime exec failed: exec failed: unable to start container process: exec: '
                       '"nosuchprogram": executable file not found in $PATH: unknown')
    assert fed_end["exitCode"] == 0 and fed_out == b"got hi\n"
    assert [channel for channel, _ in late] == [3] and json.loads(late[0][1])["exitCode"] == 0  # EXIT only


def test_attach_to_containers_with_stdin_and_a_terminal(cluster):
    node, boxes = cluster
    a = boxes["a"]

    async def run() -> tuple:
        from labkit.node.shim import STDOUT

        await node.start_container(a.sandbox, "once", resolve_image("busybox", ["sh", "-c", "read x; echo got $x"]),
                                   {}, stdin=True, stdin_once=True)
        once = await node.zygote.session({"op": "attach", "id": f"{a.uid}/once", "stdin": True})
        once_result = await session_output(once, [b"hello\n"], close_stdin=True)
        await node.start_container(a.sandbox, "tty", resolve_image("busybox", ["sh"]), {}, tty=True, stdin=True)
        term = await node.zygote.session({"op": "attach", "id": f"{a.uid}/tty", "stdin": True})
        await term.send(0, b"echo $((6*7)) $-\r")
        seen = b""
        answer = None
        async for channel, payload in term.frames():
            seen += payload if channel == STDOUT else b""
            # The answer line, then the next prompt. Where the answer starts depends on when the shell took the
            # terminal: input typed before it did is echoed by the terminal itself, the prompt comes after it
            # ("...$-\r\n# 42 smi\r\n# "); typed after, the shell's line editor echoes it ("...$-\r\n42 smi\r\n# ").
            answer = re.search(rb"\b42 (\w*)\r\n", seen)
            if answer and seen.endswith(b"# "):
                break
        term_result = await session_output(term, [b"exit 3\r"])
        log = node.log_path(a.sandbox, "tty", 0).read_bytes()
        return once_result, seen, answer, term_result, log

    (once_end, once_out, _), seen, answer, (term_end, _, _), log = asyncio.run(run())
    assert once_end["exitCode"] == 0 and once_out == b"got hello\n"
    assert answer is not None, seen
    assert b"i" in answer[1]  # $-: an interactive shell
    assert b"can't access tty" not in seen and b"job control" not in seen
    assert term_end["exitCode"] == 3
    # The log holds the terminal's output (\r\n line ends, as a TTY container's log does on kind).
    assert b" stdout F " in log and b"42 " in log
