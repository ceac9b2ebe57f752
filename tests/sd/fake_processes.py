"""A stand-in for accelerate's PartialState, so one test process can play each process of a two-process run."""

from __future__ import annotations

import torch


class FakeState:
    """What PartialState tells process ``rank`` of two."""

    def __init__(self, rank: int) -> None:
        self.process_index, self.num_processes, self.is_main_process = rank, 2, rank == 0
        self.device = torch.device("cpu")

    def wait_for_everyone(self) -> None:
        pass
