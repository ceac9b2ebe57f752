"""Adapter files do not depend on the transformers version: CLIPTextModel nests its layers under ``text_model``
before transformers 5.6 and not after, and lowdim names (and seeds the frozen bases of) the same layers alike."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel

import lowdim
from lowdim.injection.select import select_layers
from lowdim_sd.architecture import LAYER_SETS, component_tree, text_encoder_root
from lowdim_sd.tiny import TINY_TEXT


class NestedLayout(nn.Module):
    """CLIPTextModel as transformers before 5.6 builds it: its whole model under one child, ``text_model``."""

    def __init__(self, text_model: nn.Module) -> None:
        super().__init__()
        self.text_model = text_model

    def forward(self, input_ids: torch.Tensor):
        return self.text_model(input_ids)


def both_layouts() -> tuple[nn.ModuleDict, nn.ModuleDict]:
    """The same weights as the flat and as the nested CLIPTextModel, each in lowdim's component tree."""
    torch.manual_seed(0)
    flat = text_encoder_root(CLIPTextModel(CLIPTextConfig(vocab_size=64, **TINY_TEXT)))  # flat on any version
    unet = nn.Linear(1, 1)  # not looked at: only the text encoder's names differ between the layouts
    return component_tree(unet, flat), component_tree(copy.deepcopy(unet), NestedLayout(copy.deepcopy(flat)))


def test_both_layouts_give_the_same_layer_names():
    flat, nested = both_layouts()
    names = [[name for name, _ in select_layers(tree, LAYER_SETS["text"])] for tree in (flat, nested)]
    assert names[0] == names[1]
    assert names[0] and all(name.startswith("text_encoder.encoder.layers.") for name in names[0])


def test_a_file_made_on_one_layout_loads_on_the_other_and_draws_the_same(tmp_path):
    flat, nested = both_layouts()
    space = lowdim.get_space("lidb", a=8, b=8, rank=1, init="gaussian")  # a nonzero update, so the bases matter
    lowdim.inject(nested, space, LAYER_SETS["text"], seed=3)
    path = lowdim.save_adapter(tmp_path / "older.safetensors", nested)
    ids = torch.randint(0, 64, (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        base = flat["text_encoder"](ids).last_hidden_state
        lowdim.load_adapter(path, flat)
        adapted = nested["text_encoder"](ids).last_hidden_state
        loaded = flat["text_encoder"](ids).last_hidden_state
    assert (adapted - base).abs().max() > 1e-3
    torch.testing.assert_close(loaded, adapted)


class NestingCLIPTextModel(nn.Module):
    """CLIPTextModel as transformers before 5.6 defines it, for the check that guards such an install."""

    config_class = CLIPTextConfig

    def __init__(self, config: CLIPTextConfig) -> None:
        super().__init__()
        self.text_model = text_encoder_root(CLIPTextModel(config))


NestingCLIPTextModel.__name__ = "CLIPTextModel"


def test_saved_pipelines_name_the_text_encoder_as_every_transformers_reads_it(tmp_path):
    from safetensors import safe_open

    from lowdim_sd.loading import load_sd
    from lowdim_sd.text_encoder_files import save_pipeline
    from lowdim_sd.tiny import build_tiny_pipeline

    pipe = build_tiny_pipeline(seed=0)
    save_pipeline(pipe, tmp_path / "pipe")
    with safe_open(str(tmp_path / "pipe" / "text_encoder" / "model.safetensors"), framework="pt") as handle:
        names = list(handle.keys())
    assert names and all(name.startswith("text_model.") for name in names)
    ids = torch.tensor([[0, 5, 7, 2]])
    with torch.no_grad():
        saved = pipe.text_encoder(ids).last_hidden_state
        loaded = load_sd(str(tmp_path / "pipe")).pipe.text_encoder(ids).last_hidden_state
    torch.testing.assert_close(loaded, saved)


def test_flat_weights_are_refused_where_transformers_would_draw_them_as_random(tmp_path):
    from lowdim_sd.loading import ModelLoadError
    from lowdim_sd.text_encoder_files import check_readable_layout

    flat, nested = ["encoder.layers.0.self_attn.q_proj.weight"], ["text_model.encoder.layers.0.self_attn.q_proj.weight"]
    with pytest.raises(ModelLoadError, match=r"text_encoder: .*no 'text_model\.' level.*upgrade transformers"):
        check_readable_layout(tmp_path / "text_encoder", NestingCLIPTextModel, flat)
    check_readable_layout(tmp_path / "text_encoder", NestingCLIPTextModel, nested)
    check_readable_layout(tmp_path / "text_encoder", CLIPTextModel, nested)  # every version reads nested names
    installed = CLIPTextModel(CLIPTextConfig(vocab_size=64, **TINY_TEXT))
    if text_encoder_root(installed) is installed:
        check_readable_layout(tmp_path / "text_encoder", CLIPTextModel, flat)  # 5.6 and later read flat ones too


def test_a_sharded_text_encoder_is_written_nested_in_its_shards_and_index(tmp_path):
    from safetensors import safe_open

    from lowdim_sd.loading import load_sd
    from lowdim_sd.text_encoder_files import save_pipeline
    from lowdim_sd.tiny import build_tiny_pipeline

    pipe = build_tiny_pipeline(seed=0)
    save_pipeline(pipe, tmp_path / "pipe", max_shard_size="20KB")
    part = tmp_path / "pipe" / "text_encoder"
    shards = sorted(part.glob("*.safetensors"))
    assert len(shards) > 1
    for shard in shards:
        with safe_open(str(shard), framework="pt") as handle:
            names = list(handle.keys())
        assert all(name.startswith("text_model.") for name in names), shard.name
    index = next(part.glob("*.index.json")).read_text()
    assert '"text_model.encoder.layers.0.self_attn.q_proj.weight"' in index
    assert "save_pretrained" not in vars(pipe.text_encoder)  # the override lasts only for the save
    ids = torch.tensor([[0, 5, 7, 2]])
    with torch.no_grad():
        loaded = load_sd(str(tmp_path / "pipe")).pipe.text_encoder(ids).last_hidden_state
        torch.testing.assert_close(loaded, pipe.text_encoder(ids).last_hidden_state)


@pytest.mark.parametrize("folder", ["saved-fp16", "tinyfaces"])
def test_a_half_precision_folder_draws_in_plain_diffusers_without_a_dtype(tmp_path, folder):
    # diffusers loads its parts in fp32 unless told; transformers 5 loads a text encoder in the dtype its
    # config names. A folder whose config said fp16 mixed the two and failed on the first prompt.
    from diffusers import StableDiffusionPipeline

    from lowdim_sd.text_encoder_files import save_pipeline
    from lowdim_sd.tiny import build_tiny_pipeline

    if folder == "tinyfaces":
        from lowdim_tinyfaces import model_path

        path = model_path()
    else:
        path = tmp_path / "pipe"
        save_pipeline(build_tiny_pipeline(seed=0).to(torch.float16), path)
        with safe_open_first(path / "text_encoder") as handle:
            assert handle.get_tensor(next(iter(handle.keys()))).dtype == torch.float16  # stored in half, as asked
    pipe = StableDiffusionPipeline.from_pretrained(str(path), safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.text_encoder.dtype == pipe.unet.dtype == torch.float32
    image = pipe("a face", num_inference_steps=1, height=16, width=16, output_type="np").images
    assert image.shape == (1, 16, 16, 3)


def safe_open_first(folder):
    from safetensors import safe_open

    return safe_open(str(next(folder.glob("*.safetensors"))), framework="pt")
