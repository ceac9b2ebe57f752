"""The ``lowdim`` command line (Typer). Commands are thin: logic lives in importable functions."""

import os

# OpenMP threads that spin while waiting make torch on a busy CPU (another job on the same cores)
# 10-50x slower; sleeping waiters cost almost nothing when the machine is idle. Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
