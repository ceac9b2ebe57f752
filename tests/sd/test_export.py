"""LoRA export (issue 3.6): an exported lowdim adapter loaded by diffusers draws the same images.

Every check runs a real tiny SD pipeline: images generated with the lowdim adapter injected must
equal the images of a fresh base pipeline after ``load_lora_weights`` on the exported file.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

import lowdim
from lowdim_sd.architecture import LAYER_SETS
from lowdim_sd.export import (
    ExportError,
    export_adapter,
    kohya_name,
    sd1_conv1x1_layers,
    to_diffusers,
    to_kohya,
)
from lowdim_sd.tiny import build_tiny_pipeline

pytest.importorskip("peft", reason="diffusers' load_lora_weights needs the peft backend (pip install peft)")

PROMPT = "a photo of face wearing hat"
FORMATS = ("diffusers", "kohya")


def _generate(pipe) -> np.ndarray:
    generator = torch.Generator().manual_seed(123)
    return pipe(PROMPT, num_inference_steps=3, height=16, width=16, generator=generator, output_type="np").images


def _components(pipe) -> nn.ModuleDict:
    # Layer names then read "unet.<module>" / "text_encoder.<module>", as on the pipeline.
    return nn.ModuleDict({"unet": pipe.unet, "text_encoder": pipe.text_encoder})


def _randomize(adapters: lowdim.Adapters, name: str, seed: int, std: float) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in adapters.parameters(name):
            param.copy_(torch.randn(param.shape, generator=generator) * std)


def _personalized(kind: str) -> tuple[object, lowdim.Adapters, str]:
    """A tiny pipeline with a random LiDB adapter, or a rank-relaxed LiDB + LoRA(4) stack."""
    pipe = build_tiny_pipeline(seed=0)
    adapters = lowdim.inject(_components(pipe), lowdim.get_space("lidb"), LAYER_SETS["unet+text"], seed=0)
    _randomize(adapters, "default", seed=1, std=0.5)
    if kind == "lidb":
        return pipe, adapters, "default"
    lowdim.relax_rank(adapters, "default", "fast", lowdim.get_space("lora", rank=4), merge_frozen=False)
    _randomize(adapters, "fast", seed=2, std=0.3)
    return pipe, adapters, "fast"


def _lora_layers(pipe) -> int:
    from peft.tuners.lora import LoraLayer

    return sum(isinstance(m, LoraLayer) for part in (pipe.unet, pipe.text_encoder) for m in part.modules())


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # Tiny models gain nothing from threads, and on a shared 2-core box OpenMP oversubscription
    # makes each denoising step ~50x slower (measured: 0.05 s vs 3-5 s per 3-step image).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def base_images() -> np.ndarray:
    return _generate(build_tiny_pipeline(seed=0))


@pytest.fixture(scope="module")
def personalized(tmp_path_factory):
    """kind -> (adapters, adapter name, images drawn with it, saved adapter file), built once per kind."""
    cache: dict[str, tuple] = {}

    def get(kind: str) -> tuple:
        if kind not in cache:
            pipe, adapters, name = _personalized(kind)
            path = tmp_path_factory.mktemp(kind) / "me.safetensors"
            saved = lowdim.save_adapter(path, adapters, name, base_model="tiny-sd", token="sks")
            cache[kind] = (adapters, name, _generate(pipe), saved)
        return cache[kind]

    return get


@pytest.mark.filterwarnings("ignore:.*ComfyUI reads only the kohya format")  # tested in test_inspect_export
@pytest.mark.parametrize("kind", ["lidb", "stack"])
def test_exported_lora_loaded_by_diffusers_draws_the_lowdim_images(kind, personalized, base_images, tmp_path):
    adapters, name, expected, source = personalized(kind)
    # The adapter must matter, or equal images would prove nothing.
    assert np.abs(expected - base_images).max() > 0.05
    layers = len(adapters.slots(name))
    rank = 1 if kind == "lidb" else 5
    for fmt in FORMATS:
        out = export_adapter(source, tmp_path / f"me-{fmt}.safetensors", fmt, dtype="fp32")
        fresh = build_tiny_pipeline(seed=0)
        fresh.load_lora_weights(str(out))
        assert _lora_layers(fresh) == layers, f"{fmt}: diffusers dropped some layers"
        images = _generate(fresh)
        assert np.abs(images - expected).max() < 1e-3, fmt
        with safe_open(str(out), framework="pt") as handle:
            meta = handle.metadata()
        assert (meta["lora_format"], meta["rank"], meta["space"]) == (fmt, str(rank), adapters.info(name).space.name)
        assert (meta["base_model"], meta["token"], meta["source_adapter"]) == ("tiny-sd", "sks", "me.safetensors")
        tensors = load_file(out)
        down_suffix = ".lora_A.weight" if fmt == "diffusers" else ".lora_down.weight"
        downs = [v for k, v in tensors.items() if k.endswith(down_suffix)]
        assert len(downs) == layers and {v.shape[0] for v in downs} == {rank}  # LiDB r=1; stack r=1+4
        if fmt == "kohya":
            alphas = [v for k, v in tensors.items() if k.endswith(".alpha")]
            assert len(alphas) == layers and all(a.shape == () and a.item() == rank for a in alphas)


def test_fp16_export_is_close(personalized, tmp_path):
    _, _, expected, source = personalized("lidb")
    out = export_adapter(source, tmp_path / "me-fp16.safetensors", "kohya", dtype="fp16")
    assert {v.dtype for v in load_file(out).values()} == {torch.float16}
    fresh = build_tiny_pipeline(seed=0)
    fresh.load_lora_weights(str(out))
    assert np.abs(_generate(fresh) - expected).max() < 1e-2


def test_kohya_names_follow_kohya_and_diffusers_reads_them_back():
    assert kohya_name("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0") == (
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0"
    )
    # transformers >= 5 flattens CLIPTextModel; SD tools and kohya keep the text_model prefix.
    expected = "lora_te_text_model_encoder_layers_3_self_attn_q_proj"
    assert kohya_name("text_encoder.encoder.layers.3.self_attn.q_proj") == expected
    assert kohya_name("text_encoder.text_model.encoder.layers.3.self_attn.q_proj") == expected
    factors = {"text_encoder.encoder.layers.0.self_attn.q_proj": (torch.ones(2, 8), torch.ones(8, 2))}
    assert set(to_diffusers(factors)) == {
        "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight",
        "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight",
    }
    key = expected.replace("_3_", "_0_")
    assert set(to_kohya(factors)) == {f"{key}.lora_down.weight", f"{key}.lora_up.weight", f"{key}.alpha"}


def test_mixed_ranks_conv1x1_and_mlp_layers_round_trip_exactly():
    pipe = build_tiny_pipeline(seed=0)
    adapters = lowdim.Adapters(_components(pipe))
    extra = lowdim.LayerSet.from_patterns("unet.*proj_in,unet.*conv_shortcut,unet.*ff.net.2,text_encoder.*fc1")
    for name, rank, targets in [("a", 2, LAYER_SETS["unet-self"]), ("b", 3, LAYER_SETS["unet-cross"]),
                                ("c", 5, LAYER_SETS["text"]), ("d", 3, extra)]:
        adapters.add(name, lowdim.get_space("lora", rank=rank), targets, seed=0)
        _randomize(adapters, name, seed=rank, std=0.3)
    expected = _generate(pipe)
    factors = {k: v for name in adapters.names() for k, v in adapters.lora_factors(name).items()}
    conv = sd1_conv1x1_layers(factors)
    assert conv and all(".proj_in" in n or ".conv_shortcut" in n for n in conv)
    for convert in (to_diffusers, to_kohya):
        tensors = convert(factors, conv)
        # diffusers' layout has no alphas, so one rank (5); kohya keeps each layer's, with one alpha for the file.
        assert {v.shape[0] for k, v in tensors.items() if k.endswith(("lora_A.weight", "lora_down.weight"))} == \
            ({5} if convert is to_diffusers else {2, 3, 5})
        weights = {k: v for k, v in tensors.items() if k.endswith(".weight")}
        assert all(v.dim() == (4 if "proj_in" in k or "conv_shortcut" in k else 2) for k, v in weights.items())
        fresh = build_tiny_pipeline(seed=0)
        fresh.load_lora_weights(tensors)
        assert _lora_layers(fresh) == len(factors)
        assert np.abs(_generate(fresh) - expected).max() < 1e-3, convert.__name__


def test_conv1x1_rule_matches_the_real_layer_types():
    from lowdim.injection.matching import layer_kind
    from lowdim.injection.select import candidate_layers
    from lowdim_sd.architecture import sd15_skeleton

    for model in (_components(build_tiny_pipeline(seed=0)), sd15_skeleton()):
        layers = candidate_layers(model)
        convs = {name for name, module in layers if layer_kind(module) == "conv1x1"}
        assert convs and sd1_conv1x1_layers(name for name, _ in layers) == convs


def test_export_errors_are_one_clear_line(personalized, tmp_path):
    source = personalized("lidb")[3]
    with pytest.raises(ExportError, match="unknown export format 'lycoris'"):
        export_adapter(source, tmp_path / "x.safetensors", "lycoris")
    with pytest.raises(ExportError, match="dtype"):
        export_adapter(source, tmp_path / "x.safetensors", "kohya", dtype="int8")
    with pytest.raises(ExportError, match="overwrite the source"):
        export_adapter(source, source, "kohya")
    with pytest.raises(ExportError, match="x.ckpt: not a .safetensors name"):
        export_adapter(source, tmp_path / "x.ckpt", "kohya")  # a pickle name, like any other, is not written
    model = nn.Sequential(nn.Linear(8, 8))
    lowdim.inject(model, lowdim.get_space("lora", rank=2), ["0"])
    plain = lowdim.save_adapter(tmp_path / "plain.safetensors", model)
    for fmt in FORMATS:
        with pytest.raises(ExportError, match="layer '0' is not a Stable Diffusion layer") as error:
            export_adapter(plain, tmp_path / "x.safetensors", fmt)
        assert "\n" not in str(error.value)
    assert not (tmp_path / "x.safetensors").exists()
    with pytest.raises(ExportError, match="expected factors"):
        to_kohya({"unet.a.b": (torch.ones(2, 3, 4), torch.ones(2, 5, 2))})
