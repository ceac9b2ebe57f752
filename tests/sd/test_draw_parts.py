"""An adapter's parts drawn apart (`lowdim generate --text-encoder-scale/--adapter-start/--adapter-end/
--cross-attention-scale`): the text encoder's part and the UNet's cross-attention part at their own scales, the
UNet part drawing a window of the steps; every scale restored afterwards."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import lowdim
from lowdim.errors import LowdimError
from lowdim_sd.draw_parts import DrawParts, adapted_steps, draw_text, parse_draw, parts_flags, suggested_parts
from lowdim_sd.generate import GenerateConfig, attach_adapters, generate
from lowdim_sd.loading import load_sd
from lowdim_sd.modes import resolve_layers

STEPS = 4


def _random_lora(tiny_sd, layers: str | None, like: dict | None = None) -> tuple[lowdim.Adapters, dict]:
    model = load_sd(str(tiny_sd), device="cpu", dtype="fp32")
    view = lowdim.Adapters(model.modules)
    view.add("default", lowdim.get_space("lora", rank=2), resolve_layers(layers), seed=0)
    generator = torch.Generator().manual_seed(0)
    for layer, slot in view.slots("default").items():
        for key, parameter in slot.params.items():
            source = like[layer][key] if like else torch.randn(parameter.shape, generator=generator) * 0.5
            parameter.data = source.clone()
    return view, {layer: dict(slot.params) for layer, slot in view.slots("default").items()}


@pytest.fixture(scope="module")
def adapter_files(tiny_sd, tmp_path_factory):
    """A LoRA on the paper's layers (UNet and text encoder), and the same LoRA cut to its UNet layers."""
    folder = tmp_path_factory.mktemp("parts")
    whole, params = _random_lora(tiny_sd, None)
    unet_only, _ = _random_lora(tiny_sd, "unet", like=params)
    assert any(layer.startswith("text_encoder.") for layer in params)
    return (lowdim.save_adapter(folder / "whole.safetensors", whole, "default"),
            lowdim.save_adapter(folder / "unet.safetensors", unet_only, "default"))


def _draw(tiny_sd, adapter, parts: DrawParts = DrawParts(), scale: float = 1.0) -> np.ndarray:
    model = load_sd(str(tiny_sd), device="cpu", dtype="fp32")
    attach_adapters(model, [(adapter, scale)])
    config = GenerateConfig(prompts=["a [V] face at night"], seeds=[1], steps=STEPS, parts=parts)
    return np.asarray(generate(model, config)[0].image, dtype=np.int16)


def test_the_text_encoders_part_at_zero_draws_what_the_unet_part_alone_draws(tiny_sd, adapter_files, one_thread):
    whole, unet_only = adapter_files
    apart = _draw(tiny_sd, whole, DrawParts(text_encoder_scale=0.0))
    assert np.abs(apart - _draw(tiny_sd, unet_only)).max() <= 1
    assert np.abs(apart - _draw(tiny_sd, whole)).max() > 10  # the text encoder's part did change the picture


def test_the_cross_attention_part_at_zero_draws_what_the_adapter_without_it_draws(tiny_sd, adapter_files, tmp_path,
                                                                                   one_thread):
    whole, _ = adapter_files
    _, params = _random_lora(tiny_sd, None)  # the same seed: whole's own weights
    cut = {layer: {key: torch.zeros_like(value) if ".attn2." in layer else value for key, value in tensors.items()}
           for layer, tensors in params.items()}
    assert any(".attn2." in layer for layer in cut) and any(".attn1." in layer for layer in cut)
    without, _ = _random_lora(tiny_sd, None, like=cut)
    without_file = lowdim.save_adapter(tmp_path / "without.safetensors", without, "default")
    apart = _draw(tiny_sd, whole, DrawParts(cross_attention_scale=0.0))
    assert np.abs(apart - _draw(tiny_sd, without_file)).max() <= 1
    assert np.abs(apart - _draw(tiny_sd, whole)).max() > 10  # the cross-attention part did change the picture
    halfway = _draw(tiny_sd, whole, DrawParts(cross_attention_scale=0.5, adapter_start=0.5))
    assert np.abs(halfway - apart).max() > 0 and np.abs(halfway - _draw(tiny_sd, whole)).max() > 0


@pytest.mark.parametrize("start, end, scheduler, unet_scales", [
    (0.5, 1.0, "ddim", [0.0, 0.0, 0.8, 0.8]), (0.25, 0.75, "ddim", [0.0, 0.8, 0.8, 0.0]),
    (0.0, 0.5, "ddim", [0.8, 0.8, 0.0, 0.0]),
    (0.4, 0.8, "pndm", [0.0] * 6 + [0.8] * 5 + [0.0] * 2)])  # PNDM runs 13 steps for 4: fractions count those
def test_the_unet_part_draws_the_asked_steps_and_every_scale_is_restored(tiny_sd, adapter_files, one_thread,
                                                                         start, end, scheduler, unet_scales):
    whole, _ = adapter_files
    model = load_sd(str(tiny_sd), device="cpu", dtype="fp32")
    attach_adapters(model, [(whole, 0.8)])
    slots = lowdim.Adapters(model.modules).slots("a0")
    unet_slot = next(slot for layer, slot in slots.items() if layer.startswith("unet."))
    text_slot = next(slot for layer, slot in slots.items() if layer.startswith("text_encoder."))
    seen = {"unet": [], "text": []}
    model.pipe.unet.register_forward_pre_hook(lambda *_: seen["unet"].append(unet_slot.scale))
    model.pipe.text_encoder.register_forward_pre_hook(lambda *_: seen["text"].append(text_slot.scale))
    config = GenerateConfig(prompts=["a [V] face"], seeds=[1], steps=STEPS, scheduler=scheduler,
                            parts=DrawParts(text_encoder_scale=0.5, adapter_start=start, adapter_end=end))
    generate(model, config)
    assert seen["unet"] == pytest.approx(unet_scales)  # one batched (guided) call per step
    assert seen["text"] and seen["text"] == pytest.approx([0.4] * len(seen["text"]))
    assert [slot.scale for slot in slots.values()] == pytest.approx([0.8] * len(slots))


@pytest.mark.parametrize("start, end, steps, adapted", [
    (0.0, 1.0, 25, range(0, 25)), (0.3, 1.0, 25, range(8, 25)), (0.5, 1.0, 4, range(2, 4)),
    (0.99, 1.0, 25, range(24, 25)), (0.2, 1.0, 5, range(1, 5)), (0.3, 0.8, 25, range(8, 20)),
    (0.3, 0.9, 25, range(8, 23)), (0.3, 0.35, 2, range(1, 2))])
def test_the_adapted_steps_are_those_from_the_start_before_the_end_and_never_none(start, end, steps, adapted):
    assert adapted_steps(DrawParts(adapter_start=start, adapter_end=end), steps) == adapted


def test_parts_cannot_be_drawn_apart_on_a_merged_adapter(tiny_sd, adapter_files):
    model = load_sd(str(tiny_sd), device="cpu", dtype="fp32")
    attach_adapters(model, [(adapter_files[0], 1.0)])
    lowdim.Adapters(model.modules).merge("a0")
    config = GenerateConfig(prompts=["a [V] face"], steps=2, parts=DrawParts(text_encoder_scale=0.0))
    with pytest.raises(LowdimError, match="adapter 'a0' is merged into the model"):
        generate(model, config)


@settings(max_examples=60, deadline=None)
@given(scale=st.sampled_from([1.0, 0.5, 0.3, 2.0, 1e-6]), te=st.sampled_from([1.0, 0.0, 0.25, 1.5]),
       start=st.sampled_from([0.0, 0.3, 0.5, 0.95]), end=st.sampled_from([1.0, 0.8, 0.97, 0.5000001]),
       ca=st.sampled_from([1.0, 0.0, 0.5, 0.30000000000000004]))
def test_the_short_form_of_a_draw_reads_back_as_the_same_draw(scale, te, start, end, ca):
    assume(start < end)
    parts = DrawParts(text_encoder_scale=te, adapter_start=start, adapter_end=end, cross_attention_scale=ca)
    assert parse_draw(draw_text(scale, parts)) == (scale, parts)


@pytest.mark.parametrize("text", ["", "half", "0", "te=0@te=1", "start=1", "te=-1", "0.5@", "scale=0.5",
                                  "start=0.5@end=0.4", "end=0", "end=1.5", "ca=0@ca=1", "ca=x"])
def test_a_draw_that_cannot_be_read_is_one_line_naming_it(text):
    with pytest.raises(LowdimError) as caught:
        parse_draw(text)
    message = str(caught.value)
    assert "\n" not in message and (f"'{text}'" in message or "--adapter-" in message)


def test_the_suggested_flags_draw_what_results_md_measured_and_lowdim_generate_reads_them(tiny_sd, tmp_path,
                                                                                         monkeypatch):
    import lowdim_sd.generate
    from lowdim_cli.main import main

    assert parts_flags(suggested_parts(0.0)) == "--text-encoder-scale 0 --adapter-start 0.3 --adapter-end 0.8"
    assert parts_flags(suggested_parts(0.05)) == "--text-encoder-scale 0 --adapter-start 0.2 --adapter-end 0.8"
    assert parts_flags(DrawParts()) == ""
    assert parts_flags(DrawParts(cross_attention_scale=0.5)) == "--cross-attention-scale 0.5"
    asked = []
    monkeypatch.setattr(lowdim_sd.generate, "generate", lambda model, config, *_, **__: asked.append(config) or [])
    monkeypatch.setattr(lowdim_sd.generate, "save_generated", lambda *_, **__: ([], tmp_path / "grid.png"))
    model = load_sd(str(tiny_sd))
    lowdim.inject(model.modules, lowdim.get_space("lidb"), ["*attn1.to_q"], seed=1)
    adapter = lowdim.save_adapter(tmp_path / "me.safetensors", model.modules)
    for keep_styles in (0.0, 0.05):
        flags = parts_flags(suggested_parts(keep_styles)).split()
        assert main(["generate", "-m", str(tiny_sd), "-p", "a [V] face", "-a", str(adapter), *flags,
                     "-o", str(tmp_path / "x")]) == 0
        assert asked[-1].parts == suggested_parts(keep_styles)


@pytest.fixture(scope="module")
def self_attention_file(tiny_sd, tmp_path_factory):
    """A LoRA on the UNet's self-attention alone (personalize --layers unet-self): no text-encoder layer, no
    cross-attention layer."""
    view, params = _random_lora(tiny_sd, "unet-self")
    assert params and all(".attn1." in layer for layer in params)
    return lowdim.save_adapter(tmp_path_factory.mktemp("self") / "self.safetensors", view, "default")


def test_flags_that_match_no_layer_of_the_adapter_draw_nothing_else_and_are_warned_once(tiny_sd, self_attention_file,
                                                                                      one_thread):
    import warnings

    from lowdim_sd.draw_parts import warn_unmatched_parts

    moot = DrawParts(text_encoder_scale=0.0, cross_attention_scale=0.25)
    assert np.abs(_draw(tiny_sd, self_attention_file, moot) - _draw(tiny_sd, self_attention_file)).max() == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_unmatched_parts(moot, [(self_attention_file, 1.0)])
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "\n" not in message and "--text-encoder-scale and --cross-attention-scale match no layer" in message


@pytest.mark.parametrize(("parts", "files", "named"), [
    (DrawParts(text_encoder_scale=0.0), ["self"], "--text-encoder-scale"),
    (DrawParts(text_encoder_scale=0.0, adapter_start=0.3), ["self"], "--text-encoder-scale"),  # the window acts
    (DrawParts(cross_attention_scale=0.5), ["unet", "self"], None),  # one adapter's cross-attention is enough
    (DrawParts(text_encoder_scale=0.0, cross_attention_scale=0.5), ["whole"], None),
    (DrawParts(), ["self"], None),  # nothing asked
])
def test_a_flag_is_warned_about_only_when_no_adapter_has_a_layer_it_acts_on(adapter_files, self_attention_file,
                                                                             parts, files, named):
    import warnings

    from lowdim_sd.draw_parts import warn_unmatched_parts

    by_name = {"whole": adapter_files[0], "unet": adapter_files[1], "self": self_attention_file}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_unmatched_parts(parts, [(by_name[name], 1.0) for name in files])
    assert [str(w.message).split(" match")[0] for w in caught] == ([named] if named else [])


def test_the_adapter_start_and_end_on_an_adapter_without_unet_layers_are_named(tiny_sd, tmp_path):
    import warnings

    from lowdim_sd.draw_parts import warn_unmatched_parts

    view, _ = _random_lora(tiny_sd, "text")
    text_only = lowdim.save_adapter(tmp_path / "text.safetensors", view, "default")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_unmatched_parts(DrawParts(adapter_start=0.3, adapter_end=0.8), [(text_only, 1.0), (text_only, 0.5)])
    assert len(caught) == 1 and str(caught[0].message).startswith("--adapter-start and --adapter-end match no layer")
    assert "adapters" in str(caught[0].message)  # two were given


@pytest.mark.parametrize(("layers", "rows"), [
    (["text_encoder.encoder.layers.0.self_attn.q_proj",
      "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
      "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"], ["1", "te=0@start=0.3", "0.5"]),
    (["unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"], ["1", "start=0.3", "0.5"]),
    (["text_encoder.encoder.layers.0.self_attn.q_proj"], ["1", "0.5"]),  # te=0 would draw no adapter at all
])
def test_preview_rows_keep_only_the_settings_that_act_on_the_adapters_layers(layers, rows):
    from lowdim_sd.draw_parts import draw_text, parse_draw
    from lowdim_sd.preview import preview_rows

    draws = tuple(parse_draw(text) for text in ("1", "te=0@start=0.3", "0.5", "1"))
    assert [draw_text(scale, parts) for scale, parts in preview_rows(draws, layers)] == rows
