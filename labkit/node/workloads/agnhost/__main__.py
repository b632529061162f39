"""`python -m labkit.node.workloads.agnhost SUBCOMMAND ...`: the /agnhost executable."""

import sys

from labkit.node.workloads.agnhost import cli

sys.exit(cli())
