"""A merge or export whose values go past fp16's range is refused in one line naming the file, the first layer
and the fix, and nothing is written (review BH5): fp16 would store them as Inf, a model or LoRA that draws black
images in every tool, and that lowdim itself refuses on load."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import lowdim
from lowdim.errors import LowdimError
from lowdim.option_words import command_line
from lowdim_cli.main import main
from lowdim_sd.export import export_adapter
from lowdim_sd.loading import load_sd
from lowdim_sd.merged_model import save_merged

# A diffusers export warns that ComfyUI reads only kohya's UNet keys: not what these tests are about.
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore:.*ComfyUI reads only")]

LAYERS = ["unet.*attn2.to_v", "text_encoder.*q_proj"]


@pytest.fixture(scope="module")
def big(tiny_sd, tmp_path_factory):
    """A LoRA adapter of the tiny model whose values (1e5) fit fp32 but not fp16: it loads, and is drawn, in fp32."""
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    adapters = lowdim.inject(model.modules, lowdim.get_space("lora", rank=2), LAYERS, name="big")
    with torch.no_grad():
        for param in adapters.parameters("big"):
            param.fill_(1e5)
    return lowdim.save_adapter(tmp_path_factory.mktemp("big") / "big.safetensors", adapters, "big")


def _first_layer(adapter) -> str:
    """The first layer the adapter file lists: the one a refusal names, all of them going past fp16 alike."""
    return lowdim.read_adapter(adapter).layers[0].name


def test_merging_in_fp16_past_its_range_is_refused_naming_the_layer_and_writing_nothing(tiny_sd, big, tmp_path):
    out = tmp_path / "merged.safetensors"
    with pytest.raises(LowdimError) as python:
        save_merged(load_sd(str(tiny_sd), "cpu", "fp16"), [(big, 1.0)], out)
    said = str(python.value)
    assert said.startswith(f"{out}: not written: layer {_first_layer(big)} ({big}): "), said
    assert "merged weights go beyond fp16's range" in said and said.endswith("load_sd(..., dtype='fp32')"), said
    assert not out.exists()
    with command_line(), pytest.raises(LowdimError) as cli:
        save_merged(load_sd(str(tiny_sd), "cpu", "fp16"), [(big, 1.0)], out)
    assert str(cli.value).endswith("merge with --dtype fp32"), str(cli.value)


def test_the_merge_command_refuses_it_in_one_line_and_fp32_merges_it(tiny_sd, big, tmp_path, capsys):
    out = tmp_path / "merged.safetensors"
    args = ["merge", "-m", str(tiny_sd), "-a", str(big), "-o", str(out)]
    assert main([*args, "--dtype", "fp16"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "merged weights go beyond fp16's range" in err and "--dtype fp32" in err and "Traceback" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert main([*args, "--dtype", "fp32"]) == 0
    assert all(torch.isfinite(tensor).all() for tensor in load_file(out).values())


def test_a_scale_past_even_fp32_is_refused_saying_to_lower_it(tiny_sd, big, tmp_path):
    out = tmp_path / "merged.safetensors"
    with command_line(), pytest.raises(LowdimError) as cli:
        save_merged(load_sd(str(tiny_sd), "cpu", "fp32"), [(big, 1e30)], out)
    assert "beyond fp32's range" in str(cli.value) and str(cli.value).endswith("lower the adapter's scale")
    assert not out.exists()


@pytest.mark.parametrize("fmt", ["diffusers", "kohya"])
def test_exporting_in_fp16_past_its_range_is_refused_naming_the_layer_and_writing_nothing(big, tmp_path, fmt):
    out = tmp_path / "big.lora.safetensors"
    with pytest.raises(LowdimError) as python:
        export_adapter(big, out, fmt, dtype="fp16")
    said = str(python.value)
    assert said.startswith(f"{big}: layer {_first_layer(big)}: ") and "values go beyond fp16's range" in said, said
    assert said.endswith("export_adapter(dtype='fp32')"), said
    assert not out.exists()
    with command_line(), pytest.raises(LowdimError) as cli:
        export_adapter(big, out, fmt, dtype="fp16")
    assert str(cli.value).endswith("export with --save-dtype fp32"), str(cli.value)
    assert export_adapter(big, out, fmt, dtype="fp32") == out


def test_the_export_command_refuses_it_in_one_line(big, tmp_path, capsys):
    out = tmp_path / "big.lora.safetensors"
    assert main(["export", str(big), "-o", str(out), "--save-dtype", "fp16"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "values go beyond fp16's range" in err and "--save-dtype fp32" in err and "Traceback" not in err
    assert not out.exists()


def test_an_embedding_past_fp16_s_range_is_refused_in_its_export_too(embedding, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(embedding), "pt") as handle:
        tensors = {key: handle.get_tensor(key).float() * 1e9 for key in handle.keys()}  # noqa: SIM118 (a safe_open handle, no dict)  # past 65504, within fp32
        metadata = handle.metadata()
    huge = tmp_path / "huge.safetensors"
    save_file(tensors, str(huge), metadata=metadata)
    out = tmp_path / "exported.safetensors"
    with pytest.raises(LowdimError, match=r"goes beyond float16's range .*export_adapter\(dtype='fp32'\)"):
        export_adapter(huge, out, dtype="fp16")
    assert not out.exists()
    assert export_adapter(huge, out, dtype="fp32").is_file()


def test_one_value_past_fp16_in_an_otherwise_fine_layer_is_refused_naming_it(tmp_path):
    """One Inf among finite values draws black images as surely as all Inf (review CY, m09)."""
    from torch import nn

    model = nn.ModuleDict({"unet": nn.ModuleDict({"proj": nn.Linear(8, 8)})})
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=2), ["unet.proj"], name="a")
    with torch.no_grad():
        for param in adapters.parameters("a"):
            param.fill_(0.1)
            param.view(-1)[0] = 1e6  # fp16 stores this one value as Inf
    source = lowdim.save_adapter(tmp_path / "a.safetensors", adapters, "a")
    for fmt in ("diffusers", "kohya"):
        out = tmp_path / f"out.{fmt}.safetensors"
        with pytest.raises(LowdimError, match=r"layer unet\.proj: .*values go beyond fp16's range"):
            export_adapter(source, out, fmt, dtype="fp16")
        assert not out.exists()


def _filled(tiny_sd, path, layers: list[str], value: float):
    """A LoRA adapter of the tiny model on ``layers``, every value ``value``."""
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    adapters = lowdim.inject(model.modules, lowdim.get_space("lora", rank=2), layers, name="a")
    with torch.no_grad():
        for param in adapters.parameters("a"):
            param.fill_(value)
    return lowdim.save_adapter(path, adapters, "a")


def test_a_merge_past_fp16_only_in_the_second_adapters_layer_is_refused(tiny_sd, tmp_path):
    """The range check covers every merged layer, not only the first one (review CY, m24)."""
    small = _filled(tiny_sd, tmp_path / "small.safetensors", ["unet.*attn2.to_v"], 1e-3)
    text = _filled(tiny_sd, tmp_path / "text.safetensors", ["text_encoder.*q_proj"], 1e5)
    out = tmp_path / "merged.safetensors"
    with pytest.raises(LowdimError) as error:
        save_merged(load_sd(str(tiny_sd), "cpu", "fp16"), [(small, 1.0), (text, 1.0)], out)
    said = str(error.value)
    assert said.startswith(f"{out}: not written: layer {_first_layer(text)} ({text}): "), said
    assert "merged weights go beyond fp16's range" in said, said
    assert not out.exists()


def test_the_merge_refusal_names_the_first_file_covering_the_layer(tiny_sd, big, tmp_path):
    """Two adapters on one layer: the refusal names the first one given, the one whose values overflow (m23)."""
    small = _filled(tiny_sd, tmp_path / "small.safetensors", ["unet.*attn2.to_v"], 1e-3)
    out = tmp_path / "merged.safetensors"
    with pytest.raises(LowdimError) as error:
        save_merged(load_sd(str(tiny_sd), "cpu", "fp16"), [(big, 1.0), (small, 1.0)], out)
    said = str(error.value)
    assert said.startswith(f"{out}: not written: layer {_first_layer(big)} ({big}): "), said
    assert not out.exists()
