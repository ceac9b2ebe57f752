"""kohya names turn dots and underscores alike into '_', so two layers (``unet.a_b.c`` and ``unet.a.b_c``, as a
plugin backend's module names may be) can map to one kohya name. The export refuses such an adapter in one line
naming the layer and the name, rather than keep one of the two layers without a word (review Q, Q5)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import lowdim
from lowdim_cli.main import main
from lowdim_sd.export import ExportError, kohya_name, to_kohya

pytestmark = pytest.mark.filterwarnings("ignore:.*ComfyUI reads only the kohya format")


def factors(rank: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(rank)
    return torch.randn(rank, 4, generator=generator), torch.randn(3, rank, generator=generator)


def test_two_layers_of_one_kohya_name_are_refused_naming_the_layer_and_the_name():
    with pytest.raises(ExportError) as refused:
        to_kohya({"unet.a_b.c": factors(), "unet.a.b_c": factors(3)})
    assert str(refused.value) == "layer 'unet.a.b_c' maps to the kohya name 'lora_unet_a_b_c' of another layer"


def test_a_text_layer_named_with_and_without_text_model_is_one_kohya_layer_and_refused():
    with pytest.raises(ExportError, match="lora_te_text_model_encoder_layers_0_q"):
        to_kohya({"text_encoder.encoder.layers.0.q": factors(),
                  "text_encoder.text_model.encoder.layers.0.q": factors()})


# Layer names of the pieces 'a', 'b', 'a_b', 'b_a', so that dots and underscores collide often.
layer_names = st.lists(st.sampled_from(["a", "b", "a_b", "b_a"]), min_size=1, max_size=4).map(
    lambda pieces: "unet." + ".".join(pieces))


@settings(max_examples=80, deadline=None)
@given(names=st.lists(layer_names, min_size=1, max_size=6, unique=True))
def test_no_layer_vanishes_either_each_has_its_own_kohya_name_or_the_export_is_refused(names):
    layers = {name: factors() for name in names}
    if len({kohya_name(name) for name in names}) < len(names):
        with pytest.raises(ExportError, match="maps to the kohya name .* of another layer"):
            to_kohya(layers)
    else:
        written = {key for key in to_kohya(layers) if key.endswith(".lora_down.weight")}
        assert written == {f"{kohya_name(name)}.lora_down.weight" for name in names}


def test_export_of_such_an_adapter_says_so_in_one_line_and_writes_nothing(tmp_path, capsys):
    model = nn.ModuleDict({"unet": nn.ModuleDict({"a_b": nn.ModuleDict({"c": nn.Linear(4, 3)}),
                                                  "a": nn.ModuleDict({"b_c": nn.Linear(4, 3)})})})
    lowdim.inject(model, lowdim.get_space("lora", rank=2), ["unet.a_b.c", "unet.a.b_c"], seed=0)
    source = lowdim.save_adapter(tmp_path / "me.safetensors", model)
    out = tmp_path / "out" / "me.kohya.safetensors"
    assert main(["export", str(source), "--format", "kohya", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "maps to the kohya name 'lora_unet_a_b_c' of another layer" in " ".join(lines[0].split()), err
    assert not out.exists()
