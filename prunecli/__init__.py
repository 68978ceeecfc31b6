"""prunecli: a composable command-line toolchain for neural-network pruning research.

Importing the package is cheap on purpose: torch and friends are imported inside the
functions that need them, so `prunecli --help` stays fast.
"""

__version__ = "0.1.0"
