"""A pipeline call whose final latents hold NaN or Inf is one line naming the picture and the adapters, not a
black PNG: the VAE decodes NaN, PIL's cast turns it into zeros (with only numpy's "invalid value" warning), and
the command would exit 0. Training's divergence check says the same of its loss."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from lowdim.errors import LowdimError
from lowdim.option_words import either
from lowdim_sd.attached_files import adapters_on
from lowdim_sd.loading import SDModel

StepCallback = Callable[[Any, int, Any, dict], dict]


class NaNPicture(LowdimError):
    """A picture whose final latents hold NaN or Inf: refused before the VAE decodes it into a black image."""


def checking_final_latents(model: SDModel, chunk: Sequence[tuple[str, int]],
                           callback: StepCallback | None) -> StepCallback:
    """``callback`` (the pipeline's ``callback_on_step_end``, or None), then one ``isfinite`` on the latents after
    the last step, before the VAE decodes them: one host sync a call, not one a step, so drawing keeps its speed.
    ``chunk``: the (prompt, seed) of each picture the call draws, in order."""

    def on_step_end(pipe: Any, index: int, timestep: Any, callback_kwargs: dict) -> dict:
        if callback is not None:
            callback_kwargs = callback(pipe, index, timestep, callback_kwargs)
        last = getattr(pipe, "_num_timesteps", None)  # diffusers' count of the loop's steps; unknown: every step
        latents = callback_kwargs.get("latents")
        if latents is not None and (last is None or index + 1 == last):
            finite = torch.isfinite(latents).flatten(1).all(1).tolist()  # one bool a picture, one sync
            if not all(finite):
                raise NaNPicture(_nan_line(model, chunk[finite.index(False)], latents.dtype))
        return callback_kwargs

    return on_step_end


def _nan_line(model: SDModel, picture: tuple[str, int], dtype: torch.dtype) -> str:
    prompt, seed = picture
    files = [str(entry["file"] or entry.get("adapter")) for entry in adapters_on(model)]
    cause = (f"most likely an adapter whose values are too large at its scale ({', '.join(files)}): lower the "
             f"scale, or look at the file (lowdim show)" if files else "the model's own weights may be damaged")
    half = (f"; or draw in fp32 ({either('--dtype fp32', 'load_sd(dtype=' + repr('fp32') + ')')}), whose range "
            f"is far wider" if dtype == torch.float16 else "")
    return (f"the picture of '{prompt}' (seed {seed}) came out as NaN (not a number), a black picture: the numbers "
            f"overflowed while drawing it, {cause}{half}")
