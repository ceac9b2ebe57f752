"""``lowdim ui``'s Draw without a browser: a run's adapter or a dropped one, its own seed, steps and count, the
looks in its default prompt, and its progress."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors_edit import rewrite
from torch import nn

import lowdim
from lowdim.errors import LowdimError
from lowdim_sd.ui.checks import MAX_SEED
from lowdim_sd.ui.drawing import DRAW_AFTER, default_prompt, uploaded_adapter
from lowdim_sd.ui.studio import RunSettings, Stopped, Studio, StudioConfig

LOOKS = " with ginger long hair"


@pytest.fixture(scope="module")
def made(tmp_path_factory, tiny_sd):
    """(studio, one finished run): the run is read, never changed, by the tests that share it."""
    from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

    folder = tmp_path_factory.mktemp("draw")
    face = save_images(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1, folder,
                       "face")[0]
    studio = Studio(StudioConfig(model=str(tiny_sd), out=folder / "ui"))
    record = studio.personalize(face, RunSettings(model=str(tiny_sd), steps=2, crop=False, preview_steps=1))
    return studio, record


def test_drawing_uses_the_runs_adapter_and_leaves_the_model_as_it_was(made):
    studio, record = made
    drawn = studio.draw(record.name, "a [V] face", scale=1.0, seed=3, steps=2, count=2)
    assert [caption for _, caption in drawn] == ["a [V] face (seed 3, scale 1)", "a [V] face (seed 4, scale 1)"]
    off = studio.draw(record.name, "a [V] face", scale=0.0, seed=3, steps=2, count=1)
    on_again = studio.draw(record.name, "a [V] face", scale=1.0, seed=3, steps=2, count=1)
    apart = studio.draw(record.name, "a [V] face", scale=1.0, seed=3, steps=2, count=1, how="te=0@end=0.5")
    assert apart[0][1] == "a [V] face (seed 3, scale 1, te=0@end=0.5)"
    pixels = [np.asarray(image, float) for image in (drawn[0][0], off[0][0], on_again[0][0], apart[0][0])]
    assert np.abs(pixels[0] - pixels[1]).max() > 0 and np.array_equal(pixels[0], pixels[2])
    assert np.abs(pixels[0] - pixels[3]).max() > 0  # the parts apart draw another picture, with the same file
    with pytest.raises(LowdimError, match="'te=0@end=2': "):
        studio.draw(record.name, "a [V] face", how="te=0@end=2")
    with pytest.raises(LowdimError, match=r"the prompt has no \[V\]"):
        studio.draw(record.name, "a face")
    with pytest.raises(LowdimError, match="no finished run '../x'"):
        studio.draw("../x", "a [V] face")


@pytest.mark.parametrize("seed", [-1, -3, MAX_SEED + 1])
def test_draw_refuses_the_seed_typed_naming_it(made, seed):
    studio, record = made
    with pytest.raises(LowdimError, match=rf"^Picture seed must be 0 to {MAX_SEED}, got {seed}$"):
        studio.draw(record.name, "a [V] face", seed=seed, steps=2, count=2)


def test_draw_refuses_a_seed_whose_last_picture_would_overflow(made):
    studio, record = made
    with pytest.raises(LowdimError, match=rf"^Picture seed {MAX_SEED} leaves no room for 2 pictures"):
        studio.draw(record.name, "a [V] face", seed=MAX_SEED, steps=2, count=2)  # its second picture's seed
    assert len(studio.draw(record.name, "a [V] face", seed=MAX_SEED, steps=1, count=1)) == 1


def test_draw_has_its_own_steps_and_count_and_says_which_is_out_of_range(made):
    studio, record = made
    assert len(studio.draw(record.name, "a [V] face", seed=0, steps=1, count=3)) == 3
    with pytest.raises(LowdimError, match="Pictures must be 1 to 16, got 0"):
        studio.draw(record.name, "a [V] face", count=0)
    with pytest.raises(LowdimError, match="Draw's denoising steps must be 1 to 100, got 0"):
        studio.draw(record.name, "a [V] face", steps=0)
    with pytest.raises(LowdimError, match="Adapter scale must be a number, got nan"):
        studio.draw(record.name, "a [V] face", scale=float("nan"))


def test_draw_reports_its_progress(made):
    studio, record = made
    heard = []
    studio.draw(record.name, "a [V] face", steps=1, count=1, listener=lambda *event: heard.append(event))
    assert heard and heard[-1][1:] == (1, 1)  # the last picture of one


def test_a_stop_ends_a_draw_at_its_next_denoising_step(made):
    """Not once the call of up to 4 pictures it is in (generate's batch) is drawn: at 100 steps on a CPU that
    was seconds after its tab closed, while other tabs were refused."""
    studio, record = made
    studio.draw(record.name, "a [V] face", steps=1, count=1)  # its model loaded and cached
    unet = studio._drawer._cached[1].pipe.unet  # private: the one way to watch the draw's steps
    steps = []

    def step(module, args, output) -> None:
        steps.append(len(steps))
        if len(steps) == 3:
            studio.stop(wait=0)  # what Stop, a closed tab or the server's Ctrl-C asks, at the third step

    watching = unet.register_forward_hook(step)
    try:
        with pytest.raises(Stopped):
            studio.draw(record.name, "a [V] face", steps=20, count=4)
    finally:
        watching.remove()
    assert len(steps) == 3  # the fourth step was not taken
    assert len(studio.draw(record.name, "a [V] face", steps=2, count=1)) == 1  # the next draw runs whole


def test_the_default_prompt_carries_the_looks_the_run_read(made, tmp_path):
    from lowdim_sd.ui.page import shown

    studio, record = made
    assert default_prompt(record.adapter) == f"a [V] face{DRAW_AFTER}"  # the tiny model reads no looks
    described = tmp_path / "described.safetensors"
    described.write_bytes(record.adapter.read_bytes())
    recipe = {**json.loads(lowdim.read_adapter(described).metadata["extra"]), "looks": LOOKS}
    prompt = default_prompt(rewrite(described, extra=json.dumps(recipe)))
    assert prompt.startswith(f"a [V] face{LOOKS}") and prompt.endswith(DRAW_AFTER)
    assert shown(record)[5] == default_prompt(record.adapter)  # a run opened or finished fills Draw's prompt


def test_an_adapter_file_one_has_draws_as_the_runs_does(made, tiny_sd, tmp_path):
    studio, record = made
    dropped = tmp_path / "mine.safetensors"
    dropped.write_bytes(record.adapter.read_bytes())
    subject = uploaded_adapter(dropped, str(tiny_sd))
    ours = studio.draw(subject, "a [V] face", seed=5, steps=2, count=1)
    theirs = studio.draw(record.name, "a [V] face", seed=5, steps=2, count=1)
    assert np.array_equal(np.asarray(ours[0][0]), np.asarray(theirs[0][0]))


def test_a_bad_adapter_file_is_one_line(tmp_path, tiny_sd, made):
    studio, _ = made
    notes = tmp_path / "notes.txt"
    notes.write_text("not an adapter")
    with pytest.raises(LowdimError, match=r"^notes.txt is not an adapter: drop the .safetensors file"):
        uploaded_adapter(notes, str(tiny_sd))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(LowdimError, match="cut.safetensors") as caught:
        uploaded_adapter(cut, str(tiny_sd))
    assert "\n" not in str(caught.value)
    toy = nn.Sequential(nn.Linear(6, 5))
    lowdim.inject(toy, lowdim.get_space("lora"), ["0"])
    other = lowdim.save_adapter(tmp_path / "other.safetensors", toy, base_model="a toy model")
    with pytest.raises(LowdimError, match="was made for a toy model and does not fit this model"):
        studio.draw(uploaded_adapter(other, str(tiny_sd)), "a [V] face", steps=1, count=1)


def test_a_how_to_draw_with_its_own_scale_scales_the_adapter(made):
    """Review CF7: "0.5" in How to draw (the CLI's short form) draws as Adapter scale 0.5 does."""
    studio, record = made
    half = studio.draw(record.name, "a [V] face", seed=3, steps=2, count=1, how="0.5")
    scaled = studio.draw(record.name, "a [V] face", scale=0.5, seed=3, steps=2, count=1)
    assert half[0][1] == "a [V] face (seed 3, scale 0.5)"
    assert np.array_equal(np.asarray(half[0][0]), np.asarray(scaled[0][0]))


def test_a_run_is_drawn_on_its_own_model_after_another_models_run(tmp_path, tiny_sd, tiny_sd_v):
    """Review CF8: the drawing model is cached by the model's name; an SD run opened after drawing another
    model's run must not be drawn on the cached model."""
    from images_for_tests import save_images

    face = save_images(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1, tmp_path,
                       "face")[0]
    studio = Studio(StudioConfig(model=str(tiny_sd), out=tmp_path / "ui"))
    on_eps, on_v = (studio.personalize(face, RunSettings(model=str(model), steps=1, crop=False, preview_steps=1))
                    for model in (tiny_sd, tiny_sd_v))
    studio.draw(on_eps.name, "a [V] face", seed=3, steps=2, count=1)  # caches tiny_sd
    after = studio.draw(on_v.name, "a [V] face", seed=3, steps=2, count=1)
    fresh = Studio(StudioConfig(model=str(tiny_sd), out=tmp_path / "ui")).draw(on_v.name, "a [V] face", seed=3,
                                                                                steps=2, count=1)
    assert np.array_equal(np.asarray(after[0][0]), np.asarray(fresh[0][0]))
