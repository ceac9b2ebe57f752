"""Drawing from Python (review D): adapters attached under torch.inference_mode (finding 3), a single prompt or
seed (4), a str folder (7) and a refused file in attach_adapters's list (8)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import lowdim
from lowdim.errors import AdapterFileError, LowdimError
from lowdim_sd.generate import GenerateConfig, attach_adapters, draw_to_folder, generate
from lowdim_sd.loading import load_sd

PROMPT = "a photo of zz face"
pytestmark = pytest.mark.usefixtures("one_thread")


def _randomized(adapters: lowdim.Adapters, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in adapters.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5)


@pytest.fixture(scope="module")
def files(tiny_sd, tmp_path_factory):
    """(a LiDB adapter, a Textual Inversion embedding for token 'zz', another model's adapter) as files."""
    folder = tmp_path_factory.mktemp("adapters")
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    adapters = lowdim.inject(model.modules, lowdim.get_space("lidb"), ["unet.*attn2.to_v", "text_encoder.*q_proj"])
    _randomized(adapters, 5)
    lidb = lowdim.save_adapter(folder / "lidb.safetensors", adapters)
    table = model.pipe.text_encoder.get_input_embeddings().weight
    holder = nn.Module()  # the TI file's layer: the text encoder's table with one row more
    holder.embeddings = nn.Module()
    holder.embeddings.token_embedding = nn.Embedding(table.shape[0] + 1, table.shape[1])
    ti_model = nn.ModuleDict({"text_encoder": holder})
    targets = lowdim.LayerSet("e", ("text_encoder.embeddings.token_embedding",), types=("embedding",))
    _randomized(lowdim.inject(ti_model, lowdim.get_space("ti"), targets), 6)
    ti = lowdim.save_adapter(folder / "ti.safetensors", ti_model, token="zz")
    other = nn.Sequential(nn.Linear(8, 8))
    lowdim.inject(other, lowdim.get_space("lora", rank=2), ["0"])
    return lidb, ti, lowdim.save_adapter(folder / "foreign.safetensors", other)


def _image(model, tokens=None) -> np.ndarray:
    config = GenerateConfig(prompts=[PROMPT], steps=2, resolution=16)
    return np.asarray(generate(model, config, tokens)[0].image, dtype=int)


def _state(model) -> tuple:
    return (lowdim.Adapters(model.modules).names(), len(model.pipe.tokenizer),
            model.pipe.text_encoder.get_input_embeddings().weight.shape[0])


def test_adapters_attached_under_inference_mode_draw_outside_it_and_inside(tiny_sd, files):
    plain = load_sd(str(tiny_sd), "cpu", "fp32")
    attach_adapters(plain, [(files[0], 1.0), (files[1], 1.0)])
    expected = _image(plain)
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    with torch.inference_mode():
        attach_adapters(model, [(files[0], 1.0), (files[1], 1.0)])
    assert not any(p.is_inference() for p in [*model.pipe.text_encoder.parameters(), *model.pipe.unet.parameters()])
    assert np.array_equal(_image(model), expected)
    with torch.inference_mode():
        assert np.array_equal(_image(model), expected)


def test_a_single_prompt_or_seed_is_one_picture_not_one_per_character(model):
    config = GenerateConfig(prompts="a face at night", seeds=3, steps=1, resolution=16)
    assert (config.prompts, config.seeds) == (["a face at night"], [3])
    assert [(item.prompt, item.seed) for item in generate(model, config)] == [("a face at night", 3)]


@pytest.mark.parametrize("field, value", [("prompts", ["a face", 3]), ("prompts", None), ("seeds", [0.5]),
                                          ("seeds", "7")])
def test_prompts_and_seeds_of_another_kind_are_one_line_naming_the_field(model, field, value):
    config = GenerateConfig(prompts=["a face"], steps=1, resolution=16)
    setattr(config, field, value)  # after construction, past the wrapping of a single one
    with pytest.raises(LowdimError, match=f"^{field} must be a list of") as error:
        generate(model, config)
    assert "\n" not in str(error.value)


def test_draw_to_folder_takes_a_str_folder(model, tmp_path):
    out = str(tmp_path / "drawn")
    paths, grid = draw_to_folder(model, GenerateConfig(prompts=["a face"], steps=1, resolution=16), out)
    assert grid.parent == tmp_path / "drawn" and [p.parent for p in paths] == [tmp_path / "drawn"]


def test_attach_adapters_is_all_or_nothing_and_a_retry_works(tiny_sd, files):
    lidb, ti, foreign = files
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    before = _state(model)
    with pytest.raises(AdapterFileError, match="does not fit this model"):
        attach_adapters(model, [(lidb, 1.0), (ti, 1.0), (foreign, 1.0)])
    assert _state(model) == before  # no adapter, no token, no embedding row left behind
    assert attach_adapters(model, [(lidb, 1.0), (ti, 1.0)]) == ["", "zz"]
    fresh = load_sd(str(tiny_sd), "cpu", "fp32")
    attach_adapters(fresh, [(lidb, 1.0), (ti, 1.0)])
    assert np.array_equal(_image(model), _image(fresh))


@pytest.mark.parametrize("scheduler", ["ddpm", "ddim"])
def test_generate_leaves_the_pipelines_own_scheduler_in_place(model, scheduler):
    before = model.pipe.scheduler
    generate(model, GenerateConfig(prompts=["a face"], steps=2, resolution=16, scheduler=scheduler))
    assert model.pipe.scheduler is before
