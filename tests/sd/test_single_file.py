"""Single-file (original LDM layout) SD1.x checkpoints: written by lowdim, read back by diffusers' from_single_file."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors import safe_open

import lowdim
from lowdim_cli.main import main
from lowdim_sd.architecture import LAYER_SETS, SD15_TEXT_CONFIG, SD15_UNET_CONFIG
from lowdim_sd.generate import GenerateConfig, generate
from lowdim_sd.ldm_checkpoint import ldm_state_dict, save_single_file, stored_base_model
from lowdim_sd.loading import config_source, load_sd
from lowdim_sd.tiny import build_tiny_pipeline

SD15_VAE_CONFIG = {
    "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "latent_channels": 4, "sample_size": 512,
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
}


@pytest.fixture(scope="module")
def original(tiny_sd):
    return load_sd(str(tiny_sd), device="cpu", dtype="fp32")


@pytest.fixture(scope="module")
def checkpoint(original, tmp_path_factory):
    return save_single_file(original.pipe, tmp_path_factory.mktemp("single") / "tiny.safetensors")


def test_round_trip_gives_the_same_weights_and_images(original, checkpoint, tiny_sd, one_thread):
    with safe_open(str(checkpoint), "pt") as handle:
        assert handle.metadata() == {"format": "pt", "lowdim": "ldm-sd1"}
    assert not list(checkpoint.parent.glob("*.tmp"))
    loaded = load_sd(str(checkpoint), config=str(tiny_sd), device="cpu", dtype="fp32")
    for part in ("unet", "vae", "text_encoder"):
        want, got = getattr(original.pipe, part).state_dict(), getattr(loaded.pipe, part).state_dict()
        assert want.keys() == got.keys(), part
        assert all(torch.equal(want[key], got[key]) for key in want), part
    config = GenerateConfig(prompts=["a photo of a face"], seeds=[1], steps=2)
    want_image, got_image = (generate(model, config)[0].image for model in (original, loaded))
    assert np.array_equal(np.asarray(want_image), np.asarray(got_image))


def _draw(pipe) -> np.ndarray:
    generator = torch.Generator().manual_seed(5)
    return pipe("a photo of a face", num_inference_steps=2, height=16, width=16, generator=generator,
                output_type="np").images


def test_a_merged_adapter_is_baked_in_and_an_unmerged_one_is_refused(tiny_sd, tmp_path, one_thread):
    pipe = build_tiny_pipeline(seed=0)  # tiny_sd's architecture: that folder only lends its configs
    base = _draw(pipe)
    components = torch.nn.ModuleDict({"unet": pipe.unet, "text_encoder": pipe.text_encoder})
    adapters = lowdim.inject(components, lowdim.get_space("lidb"), LAYER_SETS["unet+text"], seed=0)
    with torch.no_grad():
        for param in adapters.parameters("default"):
            param.copy_(torch.randn(param.shape, generator=torch.Generator().manual_seed(1)) * 0.5)
    personalized = _draw(pipe)
    with pytest.raises(lowdim.LowdimError, match="unmerged adapter"):
        save_single_file(pipe, tmp_path / "live.safetensors")
    adapters.merge("default")
    loaded = load_sd(str(save_single_file(pipe, tmp_path / "baked.safetensors")), config=str(tiny_sd),
                     device="cpu", dtype="fp32")
    assert loaded.pipe.unet.state_dict().keys() == build_tiny_pipeline().unet.state_dict().keys()
    baked = _draw(loaded.pipe)
    assert np.allclose(baked, personalized, atol=1e-4) and not np.allclose(baked, base, atol=1e-2)


def test_sd15_layout_has_the_original_names_and_maps_back_exactly():
    """Full-size SD1.5 on the meta device: the block arithmetic the tiny model cannot reach (two resnets per
    down block, upsamplers after attention), checked against diffusers' own LDM readers."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
        infer_diffusers_model_type,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        pipe = SimpleNamespace(unet=UNet2DConditionModel(**SD15_UNET_CONFIG), vae=AutoencoderKL(**SD15_VAE_CONFIG),
                               text_encoder=CLIPTextModel(CLIPTextConfig(**SD15_TEXT_CONFIG)))
    ldm = ldm_state_dict(pipe)
    counts = {prefix: sum(key.startswith(prefix) for key in ldm)
              for prefix in ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer.")}
    assert list(counts.values()) == [686, 248, 196]  # sd-v1-5's 1131 keys, less the text position_ids buffer
    assert infer_diffusers_model_type(ldm) == "v1"
    for key in ("input_blocks.3.0.op.weight", "input_blocks.4.0.skip_connection.weight", "middle_block.1.norm.bias",
                "output_blocks.2.1.conv.weight", "output_blocks.5.2.conv.weight", "output_blocks.8.2.conv.bias",
                "output_blocks.11.1.transformer_blocks.0.attn2.to_k.weight", "time_embed.2.bias", "out.2.weight"):
        assert f"model.diffusion_model.{key}" in ldm, key
    assert ldm["first_stage_model.decoder.mid.attn_1.q.weight"].shape == (512, 512, 1, 1)
    assert "first_stage_model.decoder.up.3.upsample.conv.weight" in ldm
    assert "first_stage_model.encoder.down.1.block.0.nin_shortcut.weight" in ldm
    back = {
        "unet": convert_ldm_unet_checkpoint(ldm, dict(pipe.unet.config)),
        "vae": convert_ldm_vae_checkpoint(ldm, dict(pipe.vae.config)),
        "text_encoder": {k.removeprefix("text_model."): v for k, v in convert_ldm_clip_checkpoint(ldm).items()},
    }
    for part, state in back.items():
        # transformers before 5.6 keeps "text_model." in its own names, as the converter's output does
        want = {key.removeprefix("text_model."): value.shape for key, value in getattr(pipe, part).state_dict().items()}
        assert {key: value.shape for key, value in state.items()} == want, part


def test_cli_generates_from_a_single_file_with_model_config(checkpoint, tiny_sd, tmp_path, capsys, one_thread):
    code = main(["generate", "-m", str(checkpoint), "--model-config", str(tiny_sd), "-p", "a photo of a face",
                 "--steps", "1", "--device", "cpu", "-o", str(tmp_path / "img")])
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    assert (tmp_path / "img" / "grid.png").is_file()


def test_truncated_single_file_is_a_one_line_model_error(checkpoint, tiny_sd, tmp_path, capsys):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    code = main(["generate", "-m", str(broken), "--model-config", str(tiny_sd), "-p", "a face", "--device", "cpu",
                 "-o", str(tmp_path / "img")])
    text = capsys.readouterr().err
    lines = [line for line in text.splitlines() if line.strip()]
    assert code == 1 and "Traceback" not in text and lines[0].startswith("Error:")
    assert "broken.safetensors: this is a .safetensors file cut short (its tensors need" in " ".join(text.split())
    assert "offline?" not in text


def test_a_merged_single_file_names_its_base_model_and_loads_back_without_model_config(
        tiny_sd, face, tmp_path, capsys, one_thread):
    adapter = tmp_path / "me"
    assert main(["personalize", "-m", str(tiny_sd), "-i", str(face), "-o", str(adapter), "--steps", "1",
                 "--no-crop", "--no-preview", "--device", "cpu"]) == 0
    merged = tmp_path / "merged.safetensors"
    assert main(["merge", "-m", str(tiny_sd), "-a", str(adapter / "adapter.safetensors"), "-o", str(merged)]) == 0
    assert stored_base_model(merged) == str(tiny_sd.resolve())
    capsys.readouterr()
    code = main(["generate", "-m", str(merged), "-p", "a photo of a [V] face", "--steps", "1", "--device", "cpu",
                 "-o", str(tmp_path / "img")])
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    assert (tmp_path / "img" / "grid.png").is_file()


def test_model_config_may_be_a_registered_models_name(checkpoint, tiny_sd):
    import types

    from lowdim.hookspecs import hookimpl
    from lowdim_sd.plugin import SDBackend

    plugin = types.ModuleType("tiny_backend")
    plugin.register_backends = hookimpl(lambda register: register(SDBackend("tiny", str(tiny_sd))))
    with lowdim.use_registry(lowdim.Registry.from_plugins([plugin])):
        assert config_source(str(checkpoint), "tiny") == str(tiny_sd)
        assert config_source(str(checkpoint), str(tiny_sd)) == str(tiny_sd)  # a folder stays a folder
        assert config_source(str(checkpoint), None) is None  # a file lowdim did not merge names no base model
        loaded = load_sd(str(checkpoint), config="tiny", device="cpu", dtype="fp32")
    assert loaded.pipe.unet.config.block_out_channels == load_sd(str(tiny_sd)).pipe.unet.config.block_out_channels


def test_a_text_encoder_keyed_under_text_model_is_written_with_that_level_once():
    """transformers < 5.6 keeps CLIPTextModel's keys under ``text_model.``: the file must still say
    ``transformer.text_model.*`` once, as A1111 and ComfyUI read it, not ``text_model.text_model.*`` (CY, m29)."""
    pipe = build_tiny_pipeline(seed=0)
    older = torch.nn.Module()
    older.text_model = pipe.text_encoder  # its keys, each under text_model.
    flat = ldm_state_dict(pipe)
    nested = ldm_state_dict(SimpleNamespace(unet=pipe.unet, vae=pipe.vae, text_encoder=older))
    assert nested.keys() == flat.keys()
    assert not [key for key in nested if "text_model.text_model" in key]
