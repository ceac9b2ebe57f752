"""The NaN-picture check looks at the latents the VAE is about to decode, those after the last step, and names the
picture in a batch that overflowed (review BS12): numbers that overflow only in the last steps are still refused,
and a batch's second picture is named by its own prompt and seed, not the first's."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lowdim_sd.finite_latents import NaNPicture, checking_final_latents
from lowdim_sd.generate import GenerateConfig, generate

pytestmark = pytest.mark.usefixtures("one_thread")

PICTURES = [("a", 1), ("b", 2)]


def latents(nan_rows: tuple[int, ...] = ()) -> torch.Tensor:
    values = torch.zeros(len(PICTURES), 4, 2, 2)
    for row in nan_rows:
        values[row, 0, 0, 0] = float("nan")
    return values


def run_steps(check, steps: int, nan_at: dict[int, tuple[int, ...]], known_count: bool = True) -> None:
    pipe = SimpleNamespace(_num_timesteps=steps) if known_count else SimpleNamespace()
    for index in range(steps):
        check(pipe, index, 999 - index, {"latents": latents(nan_at.get(index, ()))})


def test_latents_that_overflow_only_at_the_last_step_are_refused_naming_that_picture(model):
    check = checking_final_latents(model, PICTURES, None)
    with pytest.raises(NaNPicture, match=r"^the picture of 'b' \(seed 2\) came out as NaN"):
        run_steps(check, 3, {2: (1,)})


def test_the_first_of_several_nan_pictures_is_named(model):
    check = checking_final_latents(model, PICTURES, None)
    with pytest.raises(NaNPicture, match=r"^the picture of 'a' \(seed 1\)"):
        run_steps(check, 3, {2: (0, 1)})


def test_only_the_final_latents_are_looked_at_when_the_step_count_is_known(model):
    """One host sync a call: a value a step's callback changes back is not refused mid-way."""
    run_steps(checking_final_latents(model, PICTURES, None), 3, {0: (0,), 1: (1,)})


def test_every_step_is_looked_at_when_the_pipeline_does_not_say_its_step_count(model):
    check = checking_final_latents(model, PICTURES, None)
    with pytest.raises(NaNPicture, match=r"^the picture of 'b' \(seed 2\)"):
        run_steps(check, 3, {1: (1,)}, known_count=False)


def test_generate_refuses_a_batch_whose_second_picture_overflows_in_the_last_step(model):
    steps, calls = 3, []

    def overflow_at_the_last_step(module, args, output):
        calls.append(None)
        if len(calls) == steps:
            output[0][1] = float("nan")  # the second picture's unconditional prediction
        return output

    config = GenerateConfig(prompts=["a face", "a face at night"], seeds=[7], steps=steps, resolution=16, batch=2)
    hook = model.pipe.unet.register_forward_hook(overflow_at_the_last_step)
    try:
        with pytest.raises(NaNPicture, match=r"^the picture of 'a face at night' \(seed 7\) came out as NaN"):
            generate(model, config)
    finally:
        hook.remove()
    assert len(calls) == steps  # one UNet call a step: both pictures in one batch
