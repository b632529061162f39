"""The notebook-facing API: `Lab` (see labkit.lab.core) and what its methods return (labkit.lab.results)."""

from labkit.lab.core import KubectlError, Lab
from labkit.lab.waiting import WaitTimeout

__all__ = ["KubectlError", "Lab", "WaitTimeout"]
