"""agnhost (kubernetes test/images/agnhost): the subcommands the Kubernetes docs and e2e tests call.

Each subcommand is `fn(argv) -> exit code`, behaving as upstream's (flags, ports, outputs, exit codes, Go's
log format). They run as a container's workload (forked from the node's zygote inside the pod) or from the
`/agnhost` executable (`python -m labkit.node.workloads.agnhost SUBCOMMAND ...`, see `launcher_script`), so
`kubectl exec POD -- /agnhost dns-suffix` works where the pod's filesystem has it. Only the standard library
and labkit.node.workloads are imported here: the executable must start quickly and anywhere.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from labkit.node.workloads.agnhost import connect, dnsinfo, netexec, porter, serve_hostname, webserver


def pause(argv: list[str]) -> int:
    from labkit.node.workloads.toolbox import pause as tiny_pause

    return tiny_pause({})


SUBCOMMANDS: dict[str, Callable[[list[str]], int]] = {
    "connect": connect.main,
    "dns-server-list": dnsinfo.dns_server_list,
    "dns-suffix": dnsinfo.dns_suffix,
    "etc-hosts": dnsinfo.etc_hosts,
    "netexec": netexec.main,
    "pause": pause,
    "porter": porter.main,
    "serve-hostname": serve_hostname.main,
    "test-webserver": webserver.main,
}

# Where the executable goes in an agnhost container (the image's ENTRYPOINT, and the e2e tests' alias).
EXECUTABLE_PATHS = ("/agnhost", "/agnhost-2")


def main(spec: dict[str, Any]) -> int:
    argv = list(spec.get("argv") or ["pause"])
    return SUBCOMMANDS[argv[0]](argv[1:])


def usage() -> str:
    names = "\n".join(f"  {name}" for name in SUBCOMMANDS)
    return (f"Usage:\n  app [command]\n\nAvailable Commands (built into the embedded labkit node):\n{names}\n\n"
            'Use "app [command] --help" for more information about a command.')


def cli(argv: list[str] | None = None) -> int:
    """The `/agnhost` executable: `agnhost SUBCOMMAND [flags]`, cobra's messages for the rest."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    fn = SUBCOMMANDS.get(args[0])
    if fn is None:
        print(f'Error: unknown command "{args[0]}" for "app"\nRun \'app --help\' for usage.', file=sys.stderr)
        return 1
    return fn(args[1:])


def launcher_script(python: str | None = None, path: str | None = None) -> str:
    """The text of an `/agnhost` executable: a Python script running `cli` with this installation's
    interpreter and import path (what a pod's root filesystem binds at EXECUTABLE_PATHS)."""
    import os

    import labkit

    python = python or sys.executable
    path = path or os.path.dirname(os.path.dirname(os.path.abspath(labkit.__file__)))
    return (f"#!{python}\n"
            "# agnhost, as built into the embedded labkit node.\n"
            "import sys\n"
            f"sys.path.insert(0, {path!r})\n"
            "from labkit.node.workloads.agnhost import cli\n"
            "sys.exit(cli())\n")
