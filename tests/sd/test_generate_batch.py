"""Images drawn together in one pipeline call are the images each prompt and seed give drawn alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lowdim_sd.draw_parts import DrawParts
from lowdim_sd.generate import GenerateConfig, generate
from lowdim_sd.loading import load_sd

PROMPTS = ["a photo of a face", "a pencil sketch of a face", "a face at night"]


@pytest.mark.parametrize("parts", [DrawParts(), DrawParts(adapter_start=0.5)], ids=["plain", "unet-joins-late"])
def test_batched_images_are_the_ones_drawn_alone_in_prompt_then_seed_order(tiny_sd, parts):
    model = load_sd(str(tiny_sd))
    drawn = {}
    for batch in (1, 4, 6):  # one at a time; chunks of 4 and 2; all six in one call
        config = GenerateConfig(prompts=PROMPTS, seeds=[3, 7], steps=3, resolution=16, parts=parts, batch=batch)
        drawn[batch] = generate(model, config)
    alone = drawn[1]
    assert [(item.prompt, item.seed) for item in alone] == [(p, s) for p in PROMPTS for s in (3, 7)]
    assert len({np.asarray(item.image).tobytes() for item in alone}) == 6  # seeds and prompts all differ
    for batch in (4, 6):
        assert [(item.prompt, item.seed) for item in drawn[batch]] == [(i.prompt, i.seed) for i in alone]
        for together, single in zip(drawn[batch], alone, strict=True):
            difference = np.abs(np.asarray(together.image, dtype=int) - np.asarray(single.image, dtype=int))
            assert difference.max() <= 1  # float sums in another order may round one level apart, no more


def test_a_batch_below_one_is_refused_in_one_line_before_the_model_loads(tmp_path, capsys):
    from lowdim_cli.main import main

    code = main(["generate", "-m", str(tmp_path / "no-model"), "-p", "a face", "--batch", "0", "-o", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip().splitlines()[-1].endswith("--batch must be at least 1, got 0")


def test_the_vae_decodes_a_calls_pictures_one_at_a_time_and_is_left_as_it_was(tiny_sd):
    model = load_sd(str(tiny_sd))
    vae, seen = model.pipe.vae, []
    decode = vae.decode

    def spy(latents, *args, **kwargs):
        seen.append((latents.shape[0], vae.use_slicing))
        return decode(latents, *args, **kwargs)

    vae.decode = spy
    generate(model, GenerateConfig(prompts=PROMPTS, steps=2, resolution=16, batch=2))
    assert seen == [(2, True), (1, True)]  # 3 pictures, 2 a call: each call decodes slice by slice
    assert vae.use_slicing is False


def test_out_of_memory_with_several_pictures_a_call_draws_fewer_at_a_time_the_same_pictures(tiny_sd):
    # An 8 GB GPU may not hold four guided 512 px pictures in one call beside personalize's model: rather
    # than lose the preview (or a long generate), the call is drawn again with half as many pictures.
    model = load_sd(str(tiny_sd))
    config = GenerateConfig(prompts=PROMPTS, seeds=[3, 7], steps=2, resolution=16, batch=4)
    expected = generate(model, config)
    pipe, calls = model.pipe, []
    draw = type(pipe).__call__

    class SmallGPU(type(pipe)):
        def __call__(self, prompt, *args, **kwargs):
            calls.append(len(prompt))
            if len(prompt) > 2:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return draw(self, prompt, *args, **kwargs)

    pipe.__class__ = SmallGPU
    with pytest.warns(UserWarning, match="out of memory drawing 4 pictures a call; drawing 2 a call"):
        drawn = generate(model, config)
    assert calls == [4, 2, 2, 2]  # six pictures: 4 refused, then 2, 2, 2, never 4 again
    assert [(i.prompt, i.seed) for i in drawn] == [(i.prompt, i.seed) for i in expected]
    for again, first in zip(drawn, expected, strict=True):
        assert np.abs(np.asarray(again.image, dtype=int) - np.asarray(first.image, dtype=int)).max() <= 1


def test_out_of_memory_with_one_picture_a_call_is_the_users_error(tiny_sd):
    model = load_sd(str(tiny_sd))
    pipe = model.pipe

    class NoMemory(type(pipe)):
        def __call__(self, *args, **kwargs):
            raise torch.OutOfMemoryError("CUDA out of memory")

    pipe.__class__ = NoMemory
    with pytest.raises(torch.OutOfMemoryError):
        generate(model, GenerateConfig(prompts=PROMPTS[:1], steps=2, resolution=16, batch=1))



def test_fp16_on_a_cpu_draws_with_one_warning_of_ours_and_none_of_diffusers(tiny_sd, tmp_path, capsys):
    import logging

    from lowdim_cli.main import main

    logged: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())
    logging.getLogger("diffusers").addHandler(handler)  # diffusers' own handler writes past capsys
    try:
        code = main(["generate", "-m", str(tiny_sd), "-p", "a face", "--steps", "2", "--device", "cpu",
                     "--dtype", "fp16", "-o", str(tmp_path / "out")])
    finally:
        logging.getLogger("diffusers").removeHandler(handler)
    captured = capsys.readouterr()
    assert code == 0 and (tmp_path / "out" / "grid.png").is_file()
    assert (captured.out + captured.err).count("fp16 on a CPU draws about three times slower than fp32") == 1
    assert not [message for message in logged if "float16" in message], logged  # its "will fail" is untrue here
