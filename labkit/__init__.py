"""labkit: see what a Kubernetes Service configures — a load balancer and a DNS server."""

__version__ = "0.1.0"
