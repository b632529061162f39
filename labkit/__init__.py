"""labkit: see what a Kubernetes Service configures — a load balancer and a DNS server."""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Lab"]


def __getattr__(name: str) -> Any:
    # `labkit.Lab` without importing pandas and the API client for every `labkit` command.
    if name == "Lab":
        from labkit.lab import Lab

        return Lab
    raise AttributeError(f"module 'labkit' has no attribute {name!r}")
