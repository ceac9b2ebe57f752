"""A model folder whose parts do not fit each other (review ED 3-6): a UNet from another model beside the text
encoder, a UNet config edited away from its weights, an SDXL UNet in an SD1.5 folder, a UNet weight file cut short.
Each is one line naming what does not fit, before the model loads, and ``lowdim show`` says the same line as the
folder's ``problem``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from lowdim_cli.main import main
from lowdim_sd.file_info import describe
from lowdim_sd.loading import ModelLoadError, load_pipeline

UNET_WEIGHTS = "diffusion_pytorch_model.safetensors"


@pytest.fixture
def copied(tiny_sd, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_sd, tmp_path / "pipe"))


def edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def refused_before_loading(folder: Path, monkeypatch) -> str:
    """The one line the load refuses ``folder`` with; diffusers never reads it."""
    from diffusers import StableDiffusionPipeline

    monkeypatch.setattr(StableDiffusionPipeline, "from_pretrained",
                        lambda *args, **kwargs: pytest.fail("diffusers read the folder"))
    with pytest.raises(ModelLoadError) as refused:
        load_pipeline(str(folder), torch.float32)
    line = str(refused.value)
    assert "\n" not in line
    return line


def shown_problem(folder: Path) -> str:
    shown = describe(folder)
    assert shown.use == "", "show offers a command for a folder every load refuses"
    return dict(shown.rows)["problem"]


def commands(folder: Path, face: Path, out: Path) -> dict[str, list[str]]:
    return {
        "generate": ["generate", "-m", str(folder), "-p", "x", "--steps", "2", "-o", str(out / "g")],
        "personalize": ["personalize", "-m", str(folder), "-i", str(face), "-o", str(out / "p"), "--steps", "2",
                        "--preview-steps", "2", "--no-crop"],
        "train": ["train", "-m", str(folder), "-i", str(face), "-o", str(out / "t"), "--steps", "2"],
    }


def said_by(argv: list[str], capsys) -> str:
    """What the command printed as its error, on one line, having exited 1 without a traceback."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err
    return " ".join(err.split())


# ED3: parts of two models
@pytest.fixture
def two_models(copied) -> Path:
    """The UNet of a model whose cross-attention takes 64 values (weights that fit it), beside a text encoder of 32."""
    from diffusers import UNet2DConditionModel

    config = json.loads((copied / "unet" / "config.json").read_text())
    shutil.rmtree(copied / "unet")
    UNet2DConditionModel.from_config({**config, "cross_attention_dim": 64}).save_pretrained(copied / "unet")
    return copied


def test_a_unet_of_another_width_than_the_text_encoder_is_one_line_naming_both(two_models, monkeypatch):
    line = refused_before_loading(two_models, monkeypatch)
    assert line == (f"{two_models / 'unet' / 'config.json'}: cross_attention_dim 64, but "
                    f"{two_models / 'text_encoder' / 'config.json'} has hidden_size 32: parts of two different "
                    f"models; copy the unet and text_encoder folders from the same model")
    assert shown_problem(two_models) == line


@pytest.mark.parametrize("command", ["generate", "personalize", "train"])
def test_every_command_says_the_line_not_a_traceback(two_models, face, tmp_path, capsys, command):
    said = said_by(commands(two_models, face, tmp_path)[command], capsys)
    assert "cross_attention_dim 64, but" in said and "parts of two different models" in said


# ED4: a config edited away from its weights
@pytest.fixture
def edited(copied) -> Path:
    edit_json(copied / "unet" / "config.json", cross_attention_dim=64)
    return copied


def test_a_unet_config_edited_to_another_width_names_the_tensor_and_both_shapes(edited, monkeypatch):
    line = refused_before_loading(edited, monkeypatch)
    assert line == (f"{edited / 'unet' / 'config.json'} does not fit its weights "
                    f"(down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight: config [32, 64], "
                    f"file [32, 32]); an edited config?")
    assert shown_problem(edited) == line


def test_the_edited_config_through_the_cli_gives_no_library_advice(edited, face, tmp_path, capsys):
    said = said_by(commands(edited, face, tmp_path)["personalize"], capsys)
    assert "does not fit its weights" in said
    assert "low_cpu_mem_usage" not in said and "ignore_mismatched_sizes" not in said


def test_diffusers_own_advice_never_reaches_the_line(copied, monkeypatch):
    """Whatever mismatch diffusers still finds, its keyword arguments (random weights) are not offered."""
    from diffusers import StableDiffusionPipeline

    def refuse(*args, **kwargs):
        raise ValueError("Cannot load  because a.weight expected shape torch.Size([2]), but got torch.Size([3]). "
                         "If you want to instead overwrite randomly initialized weights, please make sure to pass "
                         "both `low_cpu_mem_usage=False` and `ignore_mismatched_sizes=True`.")

    monkeypatch.setattr(StableDiffusionPipeline, "from_pretrained", refuse)
    with pytest.raises(ModelLoadError) as refused:
        load_pipeline(str(copied), torch.float32)
    assert str(refused.value).endswith("expected shape torch.Size([2]), but got torch.Size([3]).")


def test_a_folder_whose_parts_fit_still_loads_and_show_offers_its_command(copied):
    assert load_pipeline(str(copied), torch.float32).unet.config.cross_attention_dim == 32
    assert "problem" not in dict(describe(copied).rows) and describe(copied).use


# ED5: SDXL named by what made it one
@pytest.mark.parametrize(("edit", "cause"), [
    (lambda folder: edit_json(folder / "unet" / "config.json", addition_embed_type="text_time"),
     "its UNet takes added conditioning: unet/config.json has addition_embed_type 'text_time'"),
    (lambda folder: edit_json(folder / "model_index.json", text_encoder_2=["transformers", "CLIPTextModel"]),
     "model_index.json lists a second text encoder, text_encoder_2"),
])
def test_an_sdxl_unet_in_a_stable_diffusion_pipeline_folder_names_the_cause(copied, edit, cause, monkeypatch):
    edit(copied)
    line = refused_before_loading(copied, monkeypatch)
    assert line == (f"{copied}: an SDXL pipeline ({cause}); lowdim's SD backend takes SD1.x models "
                    f"(StableDiffusionPipeline)")
    assert shown_problem(copied) == line


# ED6: a weight file cut short
def test_a_unet_weight_file_cut_short_says_so_at_load_and_in_show(copied, monkeypatch):
    weights = copied / "unet" / UNET_WEIGHTS
    whole = weights.read_bytes()
    weights.write_bytes(whole[:len(whole) // 2])
    line = refused_before_loading(copied, monkeypatch)
    assert line == (f"{weights}: this is a .safetensors file cut short (its tensors need {len(whole)} bytes, the "
                    f"file holds {len(whole) // 2}); copy or download it again: an interrupted copy leaves such a "
                    f"file")
    assert shown_problem(copied) == line
