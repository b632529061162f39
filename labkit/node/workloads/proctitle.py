"""What `ps` and /proc show of a workload that runs in Python: the image's command, not the node's zygote.

A container's Python workload is a forked child of the node's zygote, so its /proc/PID/cmdline and environ
would read the zygote's (the node's interpreter and paths, the node's environment). In a kind pod,
`kubectl exec POD -- ps` shows `/agnhost netexec --http-port=8080` as PID 1 and /proc/1/environ holds the
container's environment. The kernel reads both from the process's own argument and environment areas
(arg_start…arg_end, env_start…env_end in /proc/self/stat), so the process rewrites them in place through
/proc/self/mem, as setproctitle(3) does: the text is cut to the area's size and the rest filled with NULs.
"""

from __future__ import annotations

import os


def _areas() -> tuple[tuple[int, int], tuple[int, int]]:
    """((arg_start, arg_end), (env_start, env_end)) from /proc/self/stat (fields 48–51, proc(5))."""
    with open("/proc/self/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2:].split()  # after "pid (comm) ": field 3 is fields[0]
    arg_start, arg_end, env_start, env_end = (int(v) for v in fields[45:49])
    return (arg_start, arg_end), (env_start, env_end)


def _fill(mem: int, area: tuple[int, int], data: bytes) -> None:
    start, end = area
    size = end - start
    if size <= 0:
        return
    os.pwrite(mem, data[:size - 1].ljust(size, b"\0"), start)


def set_process_title(argv: list[str], env: dict[str, str]) -> None:
    """Make /proc/self/cmdline read `argv` (as the image's command) and /proc/self/environ read `env`."""
    try:
        (args, envs) = _areas()
        mem = os.open("/proc/self/mem", os.O_RDWR)
    except (OSError, ValueError, IndexError):
        return  # no /proc to rewrite: nothing shows the zygote's either
    try:
        _fill(mem, args, "\0".join(argv).encode())
        _fill(mem, envs, b"".join(f"{k}={v}\0".encode() for k, v in env.items()))
    except OSError:
        pass
    finally:
        os.close(mem)
