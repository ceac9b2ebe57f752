"""A kohya export is written only where every layer's kohya key comes back, through the installed diffusers' kohya
reader, as exactly the layer it was made from: a total, injective map back onto the adapter's layers. lowdim checks
that itself, before anything is written, and refuses in one line naming the layer, rather than count on diffusers
refusing the file when it loads (a lone top-level ``unet.to_q`` lands on no module: diffusers 0.42.1 raised an
IndexError at load; a text part of a model's own layers alone: a ValueError). And only diffusers' own refusal of a text
part ("Could not automatically infer state dict type") is read as one: another ValueError of its converters means
they changed, and is said as a reader that could not be asked (FBX)."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn

import lowdim
from lowdim_cli.main import main
from lowdim_sd.export import (
    ExportError,
    _with_text_out_proj,
    export_adapter,
    kohya_name,
    refuse_layers_diffusers_renames,
    split_layer_name,
)
from lowdim_sd.kohya_diffusers_names import modules_diffusers_reads
from lowdim_sd.tiny import build_tiny_pipeline

state_dict_utils = pytest.importorskip("diffusers.utils.state_dict_utils")


def _adapter(folder: Path, names: tuple[str, ...]) -> Path:
    """A LoRA adapter with non-zero updates on each dotted layer name (``unet.to_q``, ``text_encoder.extra.ok``)."""
    model = nn.Module()
    for name in names:
        parent = model
        *path, leaf = name.split(".")
        for part in path:
            if not hasattr(parent, part):
                parent.add_module(part, nn.Module())
            parent = getattr(parent, part)
        parent.add_module(leaf, nn.Linear(4, 4))
    lowdim.inject(model, lowdim.get_space("lora", rank=2), list(names), seed=0)
    with torch.no_grad():
        for param in lowdim.Adapters(model).parameters("default"):
            param.normal_()
    return lowdim.save_adapter(folder / "mine.safetensors", model)


# Each alone makes a file diffusers reads no layer of: no module at all for the top-level to_q, and a refusal of the
# text part it cannot tell the key style of.
LANDS_NOWHERE = {"a top-level to_q": "unet.to_q", "a text layer of the model's own": "text_encoder.extra.ok"}


@pytest.mark.parametrize("layer", LANDS_NOWHERE.values(), ids=LANDS_NOWHERE.keys())
def test_a_layer_diffusers_loads_onto_no_module_is_refused_naming_it_and_nothing_is_written(tmp_path, capsys, layer):
    source = _adapter(tmp_path, (layer,))
    out = tmp_path / "mine.kohya.safetensors"
    with pytest.raises(ExportError, match=rf"layer {layer}: diffusers reads its kohya key \S+ into no module"):
        export_adapter(source, out, "kohya", dtype="fp32")
    assert not out.exists()
    assert main(["export", str(source), "--format", "kohya", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and f"layer {layer}:" in lines[0] and "--format diffusers" in lines[0], err
    assert not out.exists()


def _text_converter_raises(monkeypatch) -> None:
    def changed(state_dict, *args, **kwargs):
        raise ValueError("Original type StateDictType.KOHYA_SS is not supported")

    monkeypatch.setattr(state_dict_utils, "convert_state_dict_to_diffusers", changed)


def _unet_renamer_raises(monkeypatch) -> None:
    def changed(state_dict):
        raise ValueError("not enough values to unpack (expected 2, got 1)")

    monkeypatch.setattr(state_dict_utils, "convert_unet_state_dict_to_peft", changed)


OTHER_VALUE_ERRORS = {  # (what raises it, the layers, the one not of SD 1.x the warning names)
    "text converter": (_text_converter_raises, ("text_encoder.encoder.layers.0.self_attn.out_proj",
                                                "text_encoder.extra.ok"), "text_encoder.extra.ok"),
    "unet renamer": (_unet_renamer_raises, ("unet.extra.ok",), "unet.extra.ok"),
}


@pytest.mark.parametrize(("breaks", "layers", "named"), OTHER_VALUE_ERRORS.values(), ids=OTHER_VALUE_ERRORS.keys())
def test_another_value_error_of_diffusers_converters_is_said_as_an_unasked_reader(tmp_path, monkeypatch, breaks,
                                                                                  layers, named):
    source = _adapter(tmp_path, layers)
    breaks(monkeypatch)
    out = tmp_path / "mine.kohya.safetensors"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_adapter(source, out, "kohya", dtype="fp32")
    said = [str(warning.message) for warning in caught]
    assert len(said) == 1 and f"layer {named} was not checked" in said[0] and "ValueError" in said[0], said
    assert out.exists()


# ---------------------------------------------------------------- the round trip over the tiny SD model's layers


@functools.lru_cache(1)
def tiny_layers() -> tuple[str, ...]:
    """Every linear and 1x1-conv layer of the tiny SD pipeline, by lowdim layer name, as lowdim adapts them."""
    from lowdim.injection.select import candidate_layers

    pipe = build_tiny_pipeline(seed=0)
    return tuple(sorted(name for name, _ in candidate_layers(nn.ModuleDict({"unet": pipe.unet,
                                                                            "text_encoder": pipe.text_encoder}))))


def exported_names(names: list[str]) -> list[str]:
    """The layers an export of ``names`` writes: a text part gains an out_proj when it has none."""
    return list(_with_text_out_proj({name: (torch.zeros(1, 4), torch.zeros(4, 1)) for name in names}))


def module(name: str) -> str:
    return ".".join(split_layer_name(name))  # text layers under text_model., as diffusers names them


@settings(max_examples=60, deadline=None)
@given(names=st.lists(st.sampled_from(tiny_layers()), min_size=1, max_size=12, unique=True))
def test_every_kohya_key_of_tiny_layers_maps_back_onto_exactly_its_own_layer(names):
    layers = exported_names(names)
    keys = {kohya_name(name): name for name in layers}
    assert len(keys) == len(layers)  # no two layers share a key
    read = modules_diffusers_reads(keys)
    assert set(read) == set(keys) and None not in read.values()  # total: every key lands on a module
    assert len(set(read.values())) == len(read)  # injective: no two keys land on one module
    assert read == {key: module(name) for key, name in keys.items()}  # each on the layer it was made from


# A model's own names besides SD's: diffusers' reader restores some (proj_in, to_q inside a block), puts others on
# another module (my_layer -> my.layer) or on none (a top-level to_q; a text layer outside encoder.layers).
OWN_LAYERS = ("unet.to_q", "unet.extra.my_layer", "unet.extra.proj_in", "unet.extra.ok", "text_encoder.extra.ok",
              "unet.down_blocks.0.attentions.0.my_proj")


@settings(max_examples=60, deadline=None)
@given(tiny=st.lists(st.sampled_from(tiny_layers()), max_size=6, unique=True),
       own=st.lists(st.sampled_from(OWN_LAYERS), min_size=1, max_size=3, unique=True))
@example(tiny=[], own=["unet.to_q"])
@example(tiny=[], own=["text_encoder.extra.ok"])
def test_a_kohya_export_is_written_exactly_when_every_layer_maps_back_onto_itself(tiny, own):
    layers = exported_names(tiny + own)
    keys = {kohya_name(name): name for name in layers}
    read = modules_diffusers_reads(keys)
    misread = [name for key, name in keys.items() if read.get(key) != module(name)]
    try:
        refuse_layers_diffusers_renames(Path("mine.safetensors"), layers)
    except ExportError as refused:
        assert misread, f"refused, but every layer maps back onto itself: {refused}"
        assert any(f"layer {name}: " in str(refused) for name in misread), (str(refused), misread)
    else:
        assert not misread, f"written, but diffusers reads {misread} elsewhere: {read}"
