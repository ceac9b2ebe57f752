"""One row's adapter file, trained once per identity for the row and every row drawn from it (ROW@S, ROW@te=0...).

Two workers can reach ROW and ROW@S of one identity at the same time. The one that trains claims the file as
results are claimed (``claims``); the other waits for it and draws it, so a drawn row costs the drawing alone and
reports ROW's seconds and bytes. If the trainer's process ends without writing the file (killed, or its training
failed), the waiter trains it itself; a holder still alive is waited for at most ``ADAPTER_WAIT_S`` (one on
another machine, whose end this one cannot see, would otherwise hold it up for good).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path

from lowdim.errors import LowdimError
from lowdim_sd.bench.batched import adapter_path, pretrained
from lowdim_sd.bench.claims import claim, claim_file, holder, release
from lowdim_sd.bench.methods import Personalized

# Longer than any row trains here (full-resolution TI on a CPU aside); only a holder on another machine, whose
# death this one cannot see, makes a task wait this long.
ADAPTER_WAIT_S = 6 * 3600.0
POLL_S = 1.0


def row_adapter(out: Path, row: str, identity: str, task: str,
                train: Callable[[], Personalized]) -> tuple[Personalized, bool]:
    """``row``'s adapter for ``identity``, and whether this process trained it.

    The file an earlier task kept, or ``train()``'s (which keeps it) under the file's claim, or, while another
    process holds that claim, its file once written. ``task`` names the waiting task in the line given on a timeout.
    """
    path = adapter_path(out, row, identity)
    waiting_on: dict = {}
    started = time.monotonic()
    while True:
        ready = pretrained(out, row, identity)
        if ready is not None:
            return ready, False
        if claim(path):
            try:
                ready = pretrained(out, row, identity)  # written between the look above and the claim
                if ready is not None:
                    return ready, False
                if waiting_on:
                    warnings.warn(f"{row}'s adapter for {identity}: the process training it (pid "
                                  f"{waiting_on.get('pid')} on {waiting_on.get('host')}) ended without writing it; "
                                  f"training it here", stacklevel=2)
                return train(), True
            finally:
                release(path)
        waiting_on = holder(path) or waiting_on
        if time.monotonic() - started >= ADAPTER_WAIT_S:
            raise LowdimError(f"{task} {identity}: waited {ADAPTER_WAIT_S:g} s for {row}'s adapter for {identity}, "
                              f"which pid {waiting_on.get('pid')} on {waiting_on.get('host')} is training; if that "
                              f"process is gone, delete {claim_file(path)} and run again")
        time.sleep(POLL_S)
