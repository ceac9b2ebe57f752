"""A kohya export asks the installed diffusers' own kohya reader (the private
``lora_conversion_utils._convert_non_diffusers_lora_to_diffusers``) where each layer lands. Where that reader cannot
be asked (another diffusers lacks it, or its signature or return shape changed), an export of SD 1.x's own layers is
written as before (their names are known good), and one of a model's own layers is written with one warning line
naming the layer and the diffusers whose reader was not asked: never a traceback, never silence."""

from __future__ import annotations

import sys
import warnings
from importlib.metadata import version

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import lowdim
from lowdim_cli.main import main
from lowdim_sd.export import export_adapter, sd1_conv1x1_layers, to_kohya

lora_conversion_utils = pytest.importorskip("diffusers.loaders.lora_conversion_utils")
state_dict_utils = pytest.importorskip("diffusers.utils.state_dict_utils")

READER = "_convert_non_diffusers_lora_to_diffusers"
SD1_LAYERS = ("down_blocks.0.attentions.0.proj_in", "mid_block.attentions.0.transformer_blocks.0.attn1.to_q")
OWN_LAYER = "extra.my_layer"  # diffusers' reader, when it can be asked, puts this on extra.my.layer


def _adapter(folder, unet_layers: tuple[str, ...]):
    """A LoRA adapter on ``unet.<name>`` for each dotted name, with non-zero updates."""
    unet = nn.Module()
    for name in unet_layers:
        parent = unet
        *path, leaf = name.split(".")
        for part in path:
            if not hasattr(parent, part):
                parent.add_module(part, nn.Module())
            parent = getattr(parent, part)
        parent.add_module(leaf, nn.Linear(4, 4))
    model = nn.ModuleDict({"unet": unet})
    lowdim.inject(model, lowdim.get_space("lora", rank=2), [f"unet.{name}" for name in unet_layers], seed=0)
    with torch.no_grad():
        for param in lowdim.Adapters(model).parameters("default"):
            param.normal_()
    return lowdim.save_adapter(folder / "mine.safetensors", model)


def _export(source, out):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_adapter(source, out, "kohya", dtype="fp32")
    return [str(warning.message) for warning in caught]


def _cli_export(source, out, capsys) -> list[str]:
    assert main(["export", str(source), "--format", "kohya", "--save-dtype", "fp32", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.strip()]


def _as_written(source, out) -> None:
    """The file holds every layer, as lowdim's own kohya converter writes it."""
    factors = lowdim.read_adapter(source).lora_factors()
    expected = to_kohya(factors, sd1_conv1x1_layers(factors))  # proj_in as a 1x1 conv, as export writes it
    written = load_file(out)
    assert sorted(written) == sorted(expected)
    assert all(torch.equal(written[key], expected[key]) for key in expected)


def _says_not_checked(line: str) -> None:
    assert "unet.extra.my_layer" in line and "not checked" in line, line
    assert f"diffusers {version('diffusers')}" in line, line
    assert "\n" not in line


def _reader_missing(monkeypatch) -> None:
    monkeypatch.delattr(lora_conversion_utils, READER)  # as in a diffusers that names or places it otherwise


def _reader_module_not_importable(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, lora_conversion_utils.__name__, None)  # import raises ModuleNotFoundError


def _reader_takes_another_signature(monkeypatch) -> None:
    monkeypatch.setattr(lora_conversion_utils, READER, lambda state_dict, network_alphas: ({}, {}))


def _reader_returns_the_dict_alone(monkeypatch) -> None:
    monkeypatch.setattr(lora_conversion_utils, READER, lambda state_dict, **names: {
        key.replace("lora_unet_", "unet."): value for key, value in state_dict.items()})


def _reader_returns_the_parts_by_name(monkeypatch) -> None:
    # Unpacking this dict into (state dict, alphas) succeeds, into the two strings "unet" and "text_encoder".
    monkeypatch.setattr(lora_conversion_utils, READER, lambda state_dict, **names: {"unet": {}, "text_encoder": {}})


def _reader_returns_nothing(monkeypatch) -> None:
    monkeypatch.setattr(lora_conversion_utils, READER, lambda state_dict, **names: None)


def _reader_returns_a_list(monkeypatch) -> None:
    monkeypatch.setattr(lora_conversion_utils, READER, lambda state_dict, **names: (list(state_dict), {}))


def _peft_renamer_raises(monkeypatch) -> None:
    def changed(state_dict):
        raise KeyError("lora_A")

    monkeypatch.setattr(state_dict_utils, "convert_unet_state_dict_to_peft", changed)


UNASKABLE = [_reader_missing, _reader_module_not_importable, _reader_takes_another_signature,
             _reader_returns_the_dict_alone, _reader_returns_the_parts_by_name, _reader_returns_nothing,
             _reader_returns_a_list, _peft_renamer_raises]


@pytest.mark.parametrize("unaskable", UNASKABLE, ids=lambda case: case.__name__.lstrip("_"))
def test_sd1_layers_export_without_a_word_where_the_reader_cannot_be_asked(unaskable, tmp_path, monkeypatch, capsys):
    source = _adapter(tmp_path, SD1_LAYERS)
    unaskable(monkeypatch)
    out = tmp_path / "sd1.kohya.safetensors"
    assert _export(source, out) == []
    _as_written(source, out)
    assert _cli_export(source, tmp_path / "cli.kohya.safetensors", capsys) == []


@pytest.mark.parametrize("unaskable", UNASKABLE, ids=lambda case: case.__name__.lstrip("_"))
def test_an_own_layer_is_written_with_one_warning_naming_the_unasked_diffusers(unaskable, tmp_path, monkeypatch,
                                                                               capsys):
    source = _adapter(tmp_path, (*SD1_LAYERS, OWN_LAYER))
    unaskable(monkeypatch)
    out = tmp_path / "own.kohya.safetensors"
    said = _export(source, out)
    assert len(said) == 1, said
    _says_not_checked(said[0])
    assert "export_adapter(fmt='diffusers')" in said[0], said
    _as_written(source, out)
    lines = _cli_export(source, tmp_path / "cli.kohya.safetensors", capsys)
    assert len(lines) == 1 and lines[0].startswith("Warning: "), lines
    _says_not_checked(lines[0])
    assert "--format diffusers" in lines[0], lines
    _as_written(source, tmp_path / "cli.kohya.safetensors")


def test_where_the_reader_answers_an_own_layer_it_misplaces_is_still_refused(tmp_path, capsys):
    """The warning is only for a reader that cannot be asked: the installed one still refuses ``my_layer``."""
    source = _adapter(tmp_path, (*SD1_LAYERS, OWN_LAYER))
    out = tmp_path / "own.kohya.safetensors"
    assert main(["export", str(source), "--format", "kohya", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "Error:" in err and "extra.my.layer" in err and "Warning" not in err, err
    assert not out.exists()
