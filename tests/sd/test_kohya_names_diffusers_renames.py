"""diffusers reads a kohya key by turning every ``_`` into ``.`` and restoring SD's own names (``to_q``, ``proj_in``,
...), so a module of the user's own model named with an underscore (``nn.ModuleDict({"my_layer": ...})``) comes back
as ``my.layer``: diffusers loaded such a file without an error and dropped the layer's update (the picture differed).
A kohya export of such a layer is refused in one line naming it and advising ``--format diffusers``, before anything
is written; SD1.5's own names, and a user's name diffusers does restore, still export and load exactly."""

from __future__ import annotations

import time
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import lowdim
from lowdim_cli.main import main
from lowdim_sd import kohya_diffusers_names
from lowdim_sd.export import ExportError, export_adapter, kohya_name, split_layer_name, to_kohya
from lowdim_sd.kohya_diffusers_names import SD1_OWN_MODULES, modules_diffusers_reads, renamed_layer
from lowdim_sd.tiny import build_tiny_pipeline

pytest.importorskip("peft", reason="diffusers' load_lora_weights needs the peft backend (pip install peft)")


def _extra_layers(names: tuple[str, ...]) -> nn.ModuleDict:
    torch.manual_seed(1)  # the same base weights in lowdim's model and in the pipeline diffusers loads into
    return nn.ModuleDict({name: nn.Linear(4, 4) for name in names})


def _adapted(folder, names: tuple[str, ...]):
    """An adapter on ``unet.extra.<name>`` for each name, and what each adapted layer gives for one input."""
    unet = nn.Module()
    unet.extra = _extra_layers(names)
    model = nn.ModuleDict({"unet": unet})
    lowdim.inject(model, lowdim.get_space("lora", rank=2), lowdim.LayerSet("all", ("unet.*",), types=("linear",)))
    with torch.no_grad():
        for param in lowdim.Adapters(model).parameters("default"):
            param.normal_()
    path = lowdim.save_adapter(folder / "mine.safetensors", model, token="zz")
    inputs = torch.randn(3, 4)
    with torch.no_grad():
        expected = {name: unet.extra[name](inputs) for name in names}
    return path, inputs, expected


def _loads_exactly(out, names, inputs, expected) -> None:
    pipe = build_tiny_pipeline(seed=0)
    pipe.unet.extra = _extra_layers(names)
    pipe.load_lora_weights(str(out))
    with torch.no_grad():
        for name in names:
            assert torch.allclose(pipe.unet.extra[name](inputs), expected[name], atol=1e-6), name


def test_a_kohya_export_of_a_name_with_an_underscore_is_refused_in_one_line_and_writes_nothing(tmp_path, capsys):
    names = ("ok", "my_layer")  # with "ok" diffusers loads the file; the my_layer update alone went missing
    source, _, _ = _adapted(tmp_path, names)
    out = tmp_path / "mine.kohya.safetensors"
    with pytest.raises(ExportError) as refused:
        export_adapter(source, out, "kohya", dtype="fp32")
    message = str(refused.value)
    assert "layer unet.extra.my_layer" in message and "extra.my.layer" in message, message
    assert "export_adapter(fmt='diffusers')" in message, message
    assert not out.exists()
    assert main(["export", str(source), "--format", "kohya", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "layer unet.extra.my_layer" in lines[0] and "--format diffusers" in lines[0], err
    assert not out.exists()


def test_the_diffusers_export_it_advises_loads_such_a_name_exactly(tmp_path):
    names = ("ok", "my_layer")
    source, inputs, expected = _adapted(tmp_path, names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the diffusers format's ComfyUI note
        out = export_adapter(source, tmp_path / "mine.diffusers.safetensors", "diffusers", dtype="fp32")
    _loads_exactly(out, names, inputs, expected)


def test_a_name_with_an_underscore_that_diffusers_restores_exports_and_loads_exactly(tmp_path):
    names = ("ok", "proj_in", "to_q", "my layer")  # SD's own words, and a space, come back as they were
    source, inputs, expected = _adapted(tmp_path, names)
    out = export_adapter(source, tmp_path / "mine.kohya.safetensors", "kohya", dtype="fp32")
    _loads_exactly(out, names, inputs, expected)


def test_every_sd15_layer_keeps_its_name_through_diffusers_kohya_reader_quickly():
    from lowdim.injection.select import candidate_layers
    from lowdim_sd.architecture import sd15_skeleton

    names = [name for name, _ in candidate_layers(sd15_skeleton())]
    assert len(names) > 300
    keys = {kohya_name(name): name for name in names}
    modules_diffusers_reads(keys)  # diffusers imported once, as any export in a process does after its first
    started = time.perf_counter()
    read = modules_diffusers_reads(keys)
    elapsed = time.perf_counter() - started
    own = {key: ".".join(split_layer_name(name)) for key, name in keys.items()}  # text layers: text_model. prefixed
    assert read == own, [(own[key], read.get(key)) for key in own if read.get(key) != own[key]][:5]
    assert elapsed < 0.05, elapsed


def test_sd_models_own_layers_are_passed_without_asking_diffusers(monkeypatch):
    """Importing diffusers' loaders costs seconds: an export of SD's own layers (SD1.5's, TinyFaces') never does."""
    from lowdim.injection.select import candidate_layers
    from lowdim_sd.architecture import sd15_skeleton

    tiny = build_tiny_pipeline(seed=0)
    tiny_parts = nn.ModuleDict({"unet": tiny.unet, "text_encoder": tiny.text_encoder})
    names = [name for model in (sd15_skeleton(), tiny_parts) for name, _ in candidate_layers(model)]
    monkeypatch.setattr(kohya_diffusers_names, "modules_diffusers_reads", lambda keys: pytest.fail("asked"))
    assert renamed_layer({kohya_name(name): ".".join(split_layer_name(name)) for name in names}) is None


OUT_PROJ = "text_encoder.text_model.encoder.layers.0.self_attn.out_proj"  # export adds one where a text part lacks it


@settings(max_examples=60, deadline=None)
@given(modules=st.lists(st.from_regex(SD1_OWN_MODULES, fullmatch=True), min_size=1, max_size=8, unique=True))
def test_every_name_passed_without_asking_is_one_diffusers_reads_back_as_itself(modules):
    if any(module.startswith("text_encoder.") for module in modules) and OUT_PROJ not in modules:
        modules = [*modules, OUT_PROJ]
    keys = {kohya_name(module): module for module in modules}
    assert modules_diffusers_reads(keys) == keys


def test_a_text_layer_of_the_users_own_which_diffusers_drops_is_refused(tmp_path):
    """diffusers' kohya reader keeps only the text encoder's self_attn and mlp layers: an own ``extra.ok`` loads as
    nothing (checked here on a real pipeline), so its kohya export is refused, whatever the name's underscores."""
    attention = nn.ModuleDict({"self_attn": nn.ModuleDict({"out_proj": nn.Linear(32, 32)})})
    text = nn.ModuleDict({"encoder": nn.ModuleDict({"layers": nn.ModuleList([attention])}),
                          "extra": nn.ModuleDict({"ok": nn.Linear(4, 4)})})
    model = nn.ModuleDict({"text_encoder": text})
    lowdim.inject(model, lowdim.get_space("lora", rank=2), ["text_encoder.encoder.layers.0.self_attn.out_proj",
                                                            "text_encoder.extra.ok"], seed=0)
    with torch.no_grad():
        for param in lowdim.Adapters(model).parameters("default"):
            param.normal_()
    source = lowdim.save_adapter(tmp_path / "text.safetensors", model)
    with pytest.raises(ExportError, match=r"layer text_encoder\.extra\.ok: .* into no module it loads"):
        export_adapter(source, tmp_path / "text.kohya.safetensors", "kohya")
    pipe = build_tiny_pipeline(seed=0)
    pipe.text_encoder.extra = nn.ModuleDict({"ok": nn.Linear(4, 4)})
    inputs = torch.randn(1, 4)
    with torch.no_grad():
        before = pipe.text_encoder.extra["ok"](inputs)
        pipe.load_lora_weights(to_kohya(lowdim.read_adapter(source).lora_factors()))
        assert torch.equal(pipe.text_encoder.extra["ok"](inputs), before)  # what the refusal spares the user


@pytest.mark.parametrize("path", ["encoder.layers.0.self_attn.q_proj", "text_model.encoder.layers.0.self_attn.q_proj"])
def test_a_clip_layer_gets_one_text_model_level_under_either_transformers_layout(path):
    """transformers >= 5 drops CLIPTextModel's ``text_model.`` level; older ones keep it: the file says it once."""
    assert split_layer_name(f"text_encoder.{path}") == ("text_encoder", "text_model.encoder.layers.0.self_attn.q_proj")
    assert kohya_name(f"text_encoder.{path}") == "lora_te_text_model_encoder_layers_0_self_attn_q_proj"


def test_text_projection_keeps_its_place_beside_text_model():
    """CLIPTextModelWithProjection's text_projection sits beside text_model, not inside it (review CY, m01)."""
    assert split_layer_name("text_encoder.text_projection") == ("text_encoder", "text_projection")
    assert kohya_name("text_encoder.text_projection") == "lora_te_text_projection"
