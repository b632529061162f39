"""The `labkit` command.

    labkit lab [--port N] [--no-browser]      the front door: the cluster (started or reused) and JupyterLab on the labs
    labkit lab --student [--dir DIR]          the same on a copy of the labs with the exercises' solutions removed
    labkit up [--proxy-mode ipvs|nftables]   start the embedded cluster (returns once the API answers)
    labkit up --backend kind [--nodes N] [--proxy labkit]   a kind cluster (Docker); returns once it is usable
    labkit up --backend kubeconfig [--context C] [--learner L]   namespaces of one's own on a cluster that exists
    labkit down               stop it and delete its state (whatever this home holds)
    labkit status [--json]    what runs, where
    labkit kubeconfig         the kubeconfig's absolute path
    labkit ipvs [--stats|--rate] [--json]          the load balancer's table, as `ipvsadm -L -n` prints it
    labkit nft                                     nftables mode's rules, as `nft list table ip kube-proxy` prints them
    labkit curl URL [--from POD] [--count N]       HTTP from inside the cluster: which pod answered
    labkit dig NAME [TYPE] [--from POD] [--json]   ask the cluster DNS, from inside the cluster
    labkit images                                  the container images the labs run, one per line
    labkit handout [--student|--instructor] [--pdf] [-o DIR]   the labs executed, as HTML pages (and PDFs)

Errors print one line (`labkit: <reason>`) and exit non-zero.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from labkit import errors
from labkit.backends import embedded, homes


def _home(args: argparse.Namespace) -> Path | None:
    return Path(args.home).expanduser().absolute() if getattr(args, "home", None) else None


def _home_or_default(args: argparse.Namespace) -> Path:
    return _home(args) or embedded.default_home()


def cmd_up(args: argparse.Namespace) -> int:
    home = _home_or_default(args)
    homes.claim(home, args.backend)
    if args.backend != "embedded":
        return _up_other(args, home)
    start = time.monotonic()
    paths, started = embedded.up(_home(args), timeout=args.timeout, proxy_mode=args.proxy_mode)
    if args.wait:
        embedded.wait_usable(paths, timeout=args.timeout)
    if started:
        print(f"labkit: embedded cluster is up in {time.monotonic() - start:.2f}s, kube-proxy in "
              f"{paths.proxy_mode()} mode ({paths.home})")
    else:
        print(f"labkit: embedded cluster is already running ({paths.home})")
    print(f"export KUBECONFIG={paths.kubeconfig}")
    return 0


def _up_other(args: argparse.Namespace, home: Path) -> int:
    start = time.monotonic()
    backend = homes.backend_for(home, args.backend, args)
    started = backend.start(proxy_mode=args.proxy_mode, timeout=max(args.timeout, 300.0))
    info = backend.describe()
    what = dict(info.details).get("cluster", info.server)
    if started:
        print(f"labkit: {info.backend} cluster {what} is usable in {time.monotonic() - start:.0f}s "
              f"(kube-proxy mode {info.proxy_mode}; nodes {', '.join(info.nodes)})")
    else:
        print(f"labkit: {info.backend} cluster {what} is already usable ({home})")
    print(f"export KUBECONFIG={info.kubeconfig}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    home = _home_or_default(args)
    if homes.backend_at(home) != "embedded":
        backend = homes.backend_for(home)
        backend.stop()
        print(f"labkit: {backend.name} cluster: {backend.stopped_what()} ({home})")
        return 0
    if embedded.down(home):
        print(f"labkit: embedded cluster stopped and its state deleted ({home})")
    else:
        print(f"labkit: no embedded cluster was running ({home})")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    home = _home_or_default(args)
    if homes.backend_at(home) != "embedded":
        return _status_other(args, home)
    info = embedded.status(_home(args))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    if not info["running"] and info.get("stoppedUncleanly"):
        left = info["leftovers"]
        print(f"labkit: the embedded cluster at {info['home']} stopped uncleanly: its supervisor is gone "
              f"({left['processes']} of its processes and {left['networkNamespaces']} network namespaces are left). "
              "`labkit up` resumes it with its objects; `labkit down` deletes it.")
        return 0
    if not info["running"]:
        print(f"labkit: no embedded cluster is running ({info['home']})")
        return 0
    print(f"backend:    embedded ({info['home']})")
    print(f"server:     {info.get('server', '?')} ({'ready' if info['apiserverReady'] else 'not ready'})")
    print(f"kubeconfig: {info['kubeconfig']}")
    print(f"proxy mode: {info['proxyMode']}")
    for name, comp in info.get("components", {}).items():
        state = "running" if comp["running"] else "stopped"
        print(f"  {name:<20} {state:<8} pid {comp['pid']}  restarts {comp['restarts']}")
    return 0


def _status_other(args: argparse.Namespace, home: Path) -> int:
    backend = homes.backend_for(home)
    running = backend.running()
    info = backend.describe() if running else None
    if args.json:
        print(json.dumps({"backend": backend.name, "home": str(home), "running": running,
                          **({"server": info.server, "kubeconfig": str(info.kubeconfig), "proxyMode": info.proxy_mode,
                              "nodes": list(info.nodes), **dict(info.details)} if info else {})}, indent=2))
        return 0
    if info is None:
        print(f"labkit: the {backend.name} cluster of {home} does not answer")
        return 0
    print(f"backend:    {info.backend} ({home})")
    print(f"server:     {info.server}")
    print(f"kubeconfig: {info.kubeconfig}")
    print(f"proxy mode: {info.proxy_mode}")
    for key, value in info.details:
        print(f"{key + ':':<11} {value}")
    for node in info.nodes:
        print(f"  node {node}")
    return 0


def cmd_kubeconfig(args: argparse.Namespace) -> int:
    home = _home_or_default(args)
    if homes.backend_at(home) != "embedded":
        print(homes.backend_for(home).kubeconfig)
        return 0
    paths = embedded.Paths(home)
    if embedded.supervisor_pid(paths) is None or not paths.kubeconfig.exists():
        raise errors.ClusterNotRunning(f"no embedded cluster is running at {paths.home}; run `labkit up` first")
    print(paths.kubeconfig)
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    from labkit.backends import images

    for image in images.LAB_IMAGES:
        print(image)
    return 0


def cmd_lab(args: argparse.Namespace, extra: list[str]) -> int:
    from labkit import frontdoor, notebooks

    labs = notebooks.LABS_DIR
    if args.student:
        labs = _student_copy(Path(args.dir or frontdoor.STUDENT_DIR).absolute())
    elif args.dir:
        raise errors.LabkitError("--dir names the student copy's folder: use it with --student")
    start = time.monotonic()
    paths, started = embedded.up(_home(args), timeout=args.timeout)
    embedded.wait_usable(paths, timeout=args.timeout)
    print(f"labkit: embedded cluster {'started' if started else 'already running'} and usable in "
          f"{time.monotonic() - start:.1f}s ({paths.home}); starting JupyterLab on {labs}", flush=True)
    return frontdoor.serve(labs, paths.home, port=args.port,
                           browser=False if args.no_browser else None, extra=extra)


def _student_copy(folder: Path) -> Path:
    from labkit import frontdoor, notebooks

    copy = frontdoor.student_labs(folder, notebooks.LABS_DIR)
    print(f"labkit: student copy of the labs (solutions removed) in {folder}: "
          + (f"{len(copy.written)} files written" if copy.written else "up to date")
          + (f"; kept as you left them: {', '.join(copy.kept)} (delete one to get it fresh)" if copy.kept else ""),
          flush=True)
    return folder


def cmd_handout(args: argparse.Namespace) -> int:
    from labkit import handout

    build = "instructor" if args.instructor else "student"
    out = Path(args.output or Path("handouts") / build).absolute()
    made = handout.make(out, build=build, pdf=args.pdf)
    for page in made.pages:
        print(f"{page.html}" + (f"  {page.pdf.name}" if page.pdf else "") + f"  ({page.title})")
    print(f"labkit: {build} handout of {len(made.pages)} labs: {made.index}"
          + (f", {made.workshop_pdf}" if made.workshop_pdf else ""))
    print("stages: " + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in made.stages.items()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from labkit import frontdoor  # light: the standard library only

    parser = argparse.ArgumentParser(prog="labkit", description="See what a Kubernetes Service configures.")
    parser.add_argument("--home", help="the cluster's state directory (default: $LABKIT_HOME or ~/.labkit)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("up", help="start the embedded cluster (or reach another: --backend kind|kubeconfig)")
    p.add_argument("--backend", choices=("embedded", "kind", "kubeconfig"), default="embedded",
                   help="embedded (default, no Docker needed), kind (a real cluster in Docker) or kubeconfig "
                        "(namespaces of one's own on a cluster that already exists)")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--wait", action="store_true",
                   help="also wait until the node is Ready and the cluster DNS answers through its Service")
    p.add_argument("--proxy-mode", choices=embedded.PROXY_MODES, default=None,
                   help=f"kube-proxy's mode for the cluster's life (default: {embedded.DEFAULT_PROXY_MODE})")
    kind_options = p.add_argument_group("--backend kind")
    kind_options.add_argument("--name", help="the kind cluster's name (default: labkit)")
    kind_options.add_argument("--image", help="a kindest/node image instead of the pinned one")
    kind_options.add_argument("--nodes", type=int, default=1, help="nodes: the control plane, then workers")
    kind_options.add_argument("--proxy", choices=("kube-proxy", "labkit"), default="kube-proxy",
                              help="labkit: no kube-proxy; the labkit agent runs as a DaemonSet on kernel IPVS")
    kind_options.add_argument("--kind-bin", help="the kind executable (default: kind on PATH)")
    kind_options.add_argument("--kubectl-bin", help="the kubectl executable (default: kubectl on PATH)")
    existing = p.add_argument_group("--backend kubeconfig")
    existing.add_argument("--kubeconfig", help="the cluster's kubeconfig (default: $KUBECONFIG or ~/.kube/config)")
    existing.add_argument("--context", help="the kubeconfig context (default: its current context)")
    existing.add_argument("--learner", help="prefix of the learner's namespaces (default: $USER)")
    p.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop the cluster and delete its state").set_defaults(func=cmd_down)
    p = sub.add_parser("status", help="show what runs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    sub.add_parser("kubeconfig", help="print the kubeconfig's path").set_defaults(func=cmd_kubeconfig)
    sub.add_parser("images", help="the container images the labs run").set_defaults(func=cmd_images)
    p = sub.add_parser("lab", help="start (or reuse) the cluster and JupyterLab on the labs",
                       description="Serves the labs' sources, with each exercise's solution under it (the "
                                   "instructor's view, and a self-study reader's); --student serves a copy of the "
                                   "labs without the solutions, for a workshop's learners. Arguments after `--` go "
                                   "to JupyterLab.")
    p.add_argument("--student", action="store_true",
                   help="serve a copy of the labs with each solution replaced by a placeholder comment (checks "
                        "kept); it is written once and then yours: files you edited are never overwritten")
    p.add_argument("--dir", help=f"the student copy's folder (default: ./{frontdoor.STUDENT_DIR})")
    p.add_argument("--port", type=int, default=8888, help="JupyterLab's port on 127.0.0.1 (busy: a free one)")
    p.add_argument("--no-browser", action="store_true", help="never open a browser (none is opened without a display)")
    p.add_argument("--timeout", type=float, default=120.0)
    p.set_defaults(func=cmd_lab, passthrough=True)
    p = sub.add_parser("handout", help="execute the labs and write them as HTML pages (and PDFs)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--student", action="store_true", help="solutions replaced by placeholders (the default)")
    which.add_argument("--instructor", action="store_true", help="solutions kept")
    p.add_argument("--pdf", action="store_true", help="also one PDF per lab and one for the workshop (Chromium)")
    p.add_argument("-o", "--output", help="the folder to write into (default: handouts/<build>)")
    p.set_defaults(func=cmd_handout)
    # Tools with parsers of their own: they get the rest of the command line.
    for name, target, text in _TOOLS:
        sub.add_parser(name, add_help=False, help=text).set_defaults(tool=target)
    return parser


def _tool(target: str) -> Callable[[list[str], Path], int]:
    module, _, func = target.rpartition(":")
    return getattr(importlib.import_module(module), func)


_TOOLS = (
    ("ipvs", "labkit.agent.cli:ipvs_main", "the load balancer's table, as ipvsadm -L -n prints it"),
    ("nft", "labkit.agent.cli:nft_main", "nftables mode's rules, as nft list table ip kube-proxy prints them"),
    ("curl", "labkit.agent.cli:curl_main", "HTTP requests from inside the cluster: which pod answered"),
    ("dig", "labkit.dns.dig:dig_main", "query the cluster DNS from inside the cluster network"),
)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    try:
        if getattr(args, "tool", None):
            return _tool(args.tool)(rest, _home(args) or embedded.default_home())
        if getattr(args, "passthrough", False) and rest[:1] == ["--"]:
            return args.func(args, rest[1:])  # what follows `--` is JupyterLab's
        if getattr(args, "passthrough", False) and not rest:
            return args.func(args, [])
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        func: Callable[[argparse.Namespace], int] = args.func
        return func(args)
    except errors.LabkitError as exc:
        print(f"labkit: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
