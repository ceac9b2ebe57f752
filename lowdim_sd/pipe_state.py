"""What ``generate`` checks of a user's pipeline before drawing, and the pipeline setting it changes for its call
alone: the user's pipeline is theirs, as they set it, after every call."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lowdim.errors import LowdimError

PARTS = ("unet", "text_encoder", "vae")


def refuse_without_weights(pipe: Any, name: str) -> None:
    """A part on the meta device holds shapes, not weights: refused in one line before the pipeline starts,
    as ``attach_adapters`` refuses it, not a torch error from deep inside the first step."""
    from lowdim_sd.loading import SEQUENTIAL_OFFLOAD, offloaded_by_accelerate

    for part in PARTS:
        module = getattr(pipe, part, None)
        if module is not None and any(param.is_meta for param in module.parameters()):
            if offloaded_by_accelerate(pipe):  # the weights are there, held by accelerate's hooks
                raise LowdimError(f"{name}: {SEQUENTIAL_OFFLOAD}")
            raise LowdimError(f"{name}: the model's {part} is on the meta device (no weights): load the model's "
                              f"weights first, then generate")


@contextmanager
def own_bar_silenced(pipe: Any) -> Iterator[None]:
    """diffusers' own tqdm bar off for the call, then the user's setting put back as it was (none at all
    included): lowdim's bar, when asked for, counts the pictures, and two bars on one stream garble each other."""
    if not hasattr(pipe, "set_progress_bar_config"):  # not a diffusers pipeline: it has no bar of its own
        yield
        return
    missing = object()
    before = pipe.__dict__.get("_progress_bar_config", missing)
    pipe.set_progress_bar_config(**{**(before if isinstance(before, dict) else {}), "disable": True})
    try:
        yield
    finally:
        if before is missing:
            pipe.__dict__.pop("_progress_bar_config", None)
        else:
            pipe._progress_bar_config = before
