"""SD1.5-format models in the shapes users have them on disk (review AT): a folder without its tokenizer, an
SDXL folder, an fp16-variant folder, a copy with its safety checker deleted, the same in the Hugging Face cache,
and single files whose configs are offline or of another architecture. Each loads, or is one line naming it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from lowdim_cli.main import main
from lowdim_sd.file_info import describe
from lowdim_sd.loading import ModelLoadError, load_pipeline, load_sd
from lowdim_sd.tiny import TINY_TEXT, TINY_UNET, TINY_VAE, assemble_pipeline, build_tiny_pipeline


@pytest.fixture
def copied(tiny_sd, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_sd, tmp_path / "pipe"))


@pytest.fixture
def no_tokenizer(copied) -> Path:
    shutil.rmtree(copied / "tokenizer")
    return copied


@pytest.fixture(scope="module")
def fp16_only(tmp_path_factory) -> Path:
    """A tiny pipeline saved with ``variant="fp16"``: every weight file is ``*.fp16.safetensors``."""
    folder = tmp_path_factory.mktemp("fp16") / "pipe"
    build_tiny_pipeline(0).save_pretrained(folder, variant="fp16")
    return folder


@pytest.fixture(scope="module")
def single_file(tmp_path_factory) -> Path:
    """The tiny pipeline as one LDM checkpoint naming no base model."""
    from lowdim_sd.ldm_checkpoint import save_single_file

    return save_single_file(build_tiny_pipeline(0), tmp_path_factory.mktemp("single") / "model.safetensors")


@pytest.fixture(scope="module")
def wider(tmp_path_factory) -> Path:
    """Another architecture: the tiny pipeline with a UNet four times as wide, as a folder."""
    folder = tmp_path_factory.mktemp("wide") / "pipe"
    assemble_pipeline({**TINY_UNET, "block_out_channels": [64, 128]}, TINY_TEXT, TINY_VAE).save_pretrained(folder)
    return folder


def edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def refusal(call) -> str:
    with pytest.raises(ModelLoadError) as refused:
        call()
    return str(refused.value)


def in_hub_cache(folder: Path, cache: Path, hub_id: str) -> None:
    """``folder`` as the hub cache holds a download: refs/main, blobs, and a snapshot of links into them."""
    root = cache / ("models--" + hub_id.replace("/", "--"))
    snapshot = root / "snapshots" / ("a" * 40)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text("a" * 40)
    (root / "blobs").mkdir()
    for file in folder.rglob("*"):
        if file.is_file():
            blob = root / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
            blob.write_bytes(file.read_bytes())
            link = snapshot / file.relative_to(folder)
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.relpath(blob, link.parent), link)


@pytest.fixture
def offline_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache here, and no hub."""
    from huggingface_hub import constants

    import lowdim.hub

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(lowdim.hub, "hub_reachable", lambda *args: False)
    return cache


# AT1
def test_a_folder_without_its_tokenizer_is_one_line_naming_it(no_tokenizer, capsys):
    said = refusal(lambda: load_pipeline(str(no_tokenizer), torch.float32))
    assert said.startswith(f"{no_tokenizer / 'tokenizer'}: missing (model_index.json lists a CLIPTokenizer)")
    code = main(["generate", "-m", str(no_tokenizer), "-p", "a photo of face", "--steps", "2",
                 "-o", str(no_tokenizer.parent / "images")])
    err = capsys.readouterr().err
    assert code == 1 and "tokenizer: missing" in err and "Traceback" not in err


def test_a_tokenizer_folder_without_its_vocabulary_is_named(copied):
    (copied / "tokenizer" / "tokenizer.json").unlink()
    said = refusal(lambda: load_pipeline(str(copied), torch.float32))
    assert said.startswith(f"{copied / 'tokenizer'}: no tokenizer.json or vocab.json+merges.txt in it")


def test_a_model_config_folder_without_a_tokenizer_is_refused(no_tokenizer, single_file):
    said = refusal(lambda: load_pipeline(str(single_file), torch.float32, config=str(no_tokenizer)))
    assert said.startswith(f"{no_tokenizer / 'tokenizer'}: missing")


def test_a_tokenizer_of_no_words_loaded_anyway_is_refused(tmp_path):
    from types import SimpleNamespace

    from transformers import CLIPTokenizer

    from lowdim_sd.pipeline_parts import check_tokenizer

    empty = CLIPTokenizer.from_pretrained(str(tmp_path))  # what transformers 5 makes of no files: 2 tokens
    said = refusal(lambda: check_tokenizer(SimpleNamespace(tokenizer=empty), "some/model"))
    assert said.startswith("some/model: the tokenizer it loaded with holds no words (2 tokens)")


# AT2
SDXL_SHAPES = {
    "class": lambda folder: edit_json(folder / "model_index.json", _class_name="StableDiffusionXLPipeline"),
    "second encoder": lambda folder: edit_json(folder / "model_index.json",
                                               text_encoder_2=["transformers", "CLIPTextModelWithProjection"]),
    "added conditioning": lambda folder: edit_json(folder / "unet" / "config.json", addition_embed_type="text_time"),
}


@pytest.mark.parametrize("shape", list(SDXL_SHAPES))
def test_an_sdxl_folder_is_refused_before_loading_and_show_offers_no_command(copied, shape):
    SDXL_SHAPES[shape](copied)
    said = refusal(lambda: load_pipeline(str(copied), torch.float32))
    assert said.startswith(f"{copied}: an SDXL pipeline (")
    assert said.endswith("lowdim's SD backend takes SD1.x models (StableDiffusionPipeline)")
    shown = describe(copied)
    assert shown.use == "" and dict(shown.rows)["problem"] == said


def test_another_kind_of_pipeline_is_named(copied):
    edit_json(copied / "model_index.json", _class_name="StableDiffusionInpaintPipeline")
    assert refusal(lambda: load_pipeline(str(copied), torch.float32)).startswith(
        f"{copied}: a StableDiffusionInpaintPipeline; lowdim's SD backend takes SD1.x")


def test_a_model_config_of_an_sdxl_pipeline_names_the_option(copied, single_file):
    SDXL_SHAPES["class"](copied)
    said = refusal(lambda: load_sd(single_file, "cpu", "fp32", config=str(copied)))
    assert said.startswith(f"load_sd(config='{copied}'): an SDXL pipeline (StableDiffusionXLPipeline)")


# AT3
def test_an_fp16_variant_folder_loads_in_the_dtype_asked(fp16_only):
    model = load_sd(fp16_only, "cpu", "fp32")
    original = build_tiny_pipeline(0).unet.state_dict()
    loaded = model.pipe.unet.state_dict()
    assert model.pipe.unet.dtype == torch.float32 and model.pipe.text_encoder.dtype == torch.float32
    assert all(torch.allclose(loaded[key], original[key], rtol=1e-3, atol=1e-4) for key in original)  # as saved
    assert describe(fp16_only).use.startswith("lowdim personalize -m")


def test_a_part_without_weights_is_named(copied):
    (copied / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    said = refusal(lambda: load_pipeline(str(copied), torch.float32))
    assert said.startswith(f"{copied / 'vae'}: no .safetensors weights in it")


def test_a_cached_fp16_copy_loads_by_its_hub_id_offline(fp16_only, offline_cache):
    in_hub_cache(fp16_only, offline_cache, "me/tiny-fp16")
    model = load_sd("me/tiny-fp16", "cpu", "fp32")
    assert model.pipe.unet.dtype == torch.float32 and model.pipe.name_or_path == "me/tiny-fp16"


def test_a_cached_copy_of_pickles_gets_the_pickle_line_not_not_cached(copied, offline_cache):
    unet = copied / "unet"
    torch.save({}, unet / "diffusion_pytorch_model.bin")
    (unet / "diffusion_pytorch_model.safetensors").unlink()
    in_hub_cache(copied, offline_cache, "me/tiny-bin")
    said = refusal(lambda: load_sd("me/tiny-bin", "cpu", "fp32"))
    assert said.startswith("me/tiny-bin (its copy in the Hugging Face cache): ")
    assert "diffusion_pytorch_model.bin: pickle weights can run code when loaded" in said


def test_a_cached_copy_without_its_tokenizer_is_named_incomplete(no_tokenizer, offline_cache):
    in_hub_cache(no_tokenizer, offline_cache, "me/tiny-notok")
    said = refusal(lambda: load_sd("me/tiny-notok", "cpu", "fp32"))
    assert said.startswith("me/tiny-notok: its copy in the Hugging Face cache is incomplete (")
    assert "tokenizer: missing" in said and "neither in the local cache" not in said


# AT4
def test_a_copy_listing_its_deleted_safety_checker_loads(copied):
    edit_json(copied / "model_index.json", safety_checker=["stable_diffusion", "StableDiffusionSafetyChecker"],
              feature_extractor=["transformers", "CLIPImageProcessor"], requires_safety_checker=True)
    pipe = load_pipeline(str(copied), torch.float32)
    assert pipe.safety_checker is None and pipe.feature_extractor is None


# AT5
@pytest.mark.parametrize("reason", [
    "Cannot find an appropriate cached snapshot folder for the specified revision on the local disk and outgoing "
    "traffic has been disabled. To enable repo look-ups and downloads online, set 'HF_HUB_OFFLINE=0'",
    "some other words diffusers finds",
])
def test_a_single_file_offline_without_configs_is_told_the_option(single_file, monkeypatch, reason):
    from diffusers import StableDiffusionPipeline
    from huggingface_hub import constants

    def offline(*args, **kwargs):
        raise OSError(reason)

    monkeypatch.setattr(StableDiffusionPipeline, "from_single_file", offline)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    said = refusal(lambda: load_pipeline(str(single_file), torch.float32))
    assert "(offline? pass load_sd(config=...), a local diffusers folder of the same model)" in said


def test_show_names_the_configs_a_single_file_needs_offline(single_file, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert "--model-config FOLDER" in describe(single_file).use


# AT6
def test_a_model_config_of_another_architecture_is_named_as_such(single_file, wider, tmp_path):
    from lowdim_sd.ldm_checkpoint import save_single_file

    said = refusal(lambda: load_sd(single_file, "cpu", "fp32", config=str(wider)))
    assert said.startswith(f"load_sd(config='{wider}') is another architecture than {single_file} (it describes a "
                           f"UNet2DConditionModel of ")
    assert said.endswith("pass the folder of the model the checkpoint was made from")
    wide_file = save_single_file(load_pipeline(str(wider), torch.float32), tmp_path / "wide.safetensors")
    tiny = build_tiny_pipeline(0)
    tiny.save_pretrained(tmp_path / "tiny")
    said = refusal(lambda: load_sd(wide_file, "cpu", "fp32", config=str(tmp_path / "tiny")))
    assert "is another architecture than" in said and "the file's UNet holds" in said


def test_diffusers_advice_on_mismatched_shapes_is_left_out():
    from lowdim_sd.pipeline_parts import single_file_error

    reason = ("Cannot load  because embeddings.position_embedding.weight expected shape torch.Size([77, 32]), but "
              "got torch.Size([77, 128]). If you want to instead overwrite randomly initialized weights, please make "
              "sure to pass both `low_cpu_mem_usage=False` and `ignore_mismatched_sizes=True`.")
    said = str(single_file_error(Path("m.safetensors"), reason, "--model-config m/plain"))
    assert said.startswith("m.safetensors: its weights do not fit --model-config m/plain (another architecture?)")
    assert "low_cpu_mem_usage" not in said


def test_an_fp16_shard_index_pointing_outside_the_folder_is_refused(copied):
    unet = copied / "unet"
    weights = unet / "diffusion_pytorch_model.safetensors"
    shutil.move(weights, copied.parent / "outside.fp16.safetensors")
    index = {"weight_map": {"conv_in.weight": "../../outside.fp16.safetensors"}}
    (unet / "diffusion_pytorch_model.safetensors.index.fp16.json").write_text(json.dumps(index))
    said = refusal(lambda: load_pipeline(str(copied), torch.float32))
    assert "shard path '../../outside.fp16.safetensors' leaves the weights folder" in said


# AX2: with the hub reachable a cached hub id loads as diffusers loads it (an updated repository is fetched)
def test_with_the_hub_reachable_a_cached_hub_id_is_loaded_by_diffusers_after_its_kind_is_checked(
        copied, offline_cache, monkeypatch):
    from diffusers import StableDiffusionPipeline

    import lowdim.hub

    monkeypatch.setattr(lowdim.hub, "hub_reachable", lambda *args: True)
    in_hub_cache(copied, offline_cache, "me/tiny-online")
    asked = []

    def from_hub(source, *args, **kwargs):
        asked.append(source)
        raise OSError("the test's hub answers nothing")

    monkeypatch.setattr(StableDiffusionPipeline, "from_pretrained", from_hub)
    refusal(lambda: load_pipeline("me/tiny-online", torch.float32))
    assert asked == ["me/tiny-online"]  # the hub id itself, not its cached snapshot folder
    SDXL_SHAPES["class"](copied)
    in_hub_cache(copied, offline_cache, "me/tiny-xl")
    said = refusal(lambda: load_pipeline("me/tiny-xl", torch.float32))
    assert said.startswith("me/tiny-xl (its copy in the Hugging Face cache): an SDXL pipeline (")
    assert asked == ["me/tiny-online"]


# Review AY: shapes that load, and the words for what does not
def test_a_folder_saved_as_an_img2img_pipeline_loads(copied):
    edit_json(copied / "model_index.json", _class_name="StableDiffusionImg2ImgPipeline")  # the same SD1.x parts
    assert load_pipeline(str(copied), torch.float32).unet is not None


def test_a_model_config_folder_of_configs_only_loads_a_single_file(single_file, copied):
    for weights in copied.rglob("*.safetensors"):  # the usual --model-config: a model's configs, no weights
        weights.unlink()
    pipe = load_pipeline(str(single_file), torch.float32, config=str(copied))
    original = build_tiny_pipeline(0).unet.state_dict()
    assert all(torch.equal(pipe.unet.state_dict()[key], original[key]) for key in original)


def test_a_folder_with_plain_and_fp16_weights_loads_the_plain_ones(copied):
    from safetensors.torch import load_file

    build_tiny_pipeline(1).save_pretrained(copied, variant="fp16")  # other weights, under the fp16 names
    plain = load_file(copied / "unet" / "diffusion_pytorch_model.safetensors")
    loaded = load_pipeline(str(copied), torch.float32).unet.state_dict()
    assert all(torch.equal(loaded[key], plain[key]) for key in plain)


def test_a_tokenizer_of_only_its_two_special_tokens_is_refused_whatever_length_it_states(tmp_path):
    from types import SimpleNamespace

    from transformers import CLIPTokenizer

    from lowdim_sd.pipeline_parts import check_tokenizer

    empty = CLIPTokenizer.from_pretrained(str(tmp_path), model_max_length=77)
    assert len(empty) == 2
    said = refusal(lambda: check_tokenizer(SimpleNamespace(tokenizer=empty), "some/model"))
    assert said.startswith("some/model: the tokenizer it loaded with holds no words (2 tokens)")


def test_a_single_file_failing_with_a_model_config_is_not_told_to_pass_one(single_file, copied, monkeypatch):
    from diffusers import StableDiffusionPipeline
    from huggingface_hub import constants

    def unreachable(*args, **kwargs):
        raise OSError("Connection error: the hub could not be reached")

    monkeypatch.setattr(StableDiffusionPipeline, "from_single_file", unreachable)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    said = refusal(lambda: load_pipeline(str(single_file), torch.float32, config=str(copied)))
    assert said == (f"{single_file}: could not load it as an SD1.x checkpoint: Connection error: the hub could not "
                    f"be reached")  # no "(offline? pass --model-config ...)": it was passed


# BC2: inspect reads a folder's configs only, and an SDXL folder's are no SD1.x model's sizes
def test_inspect_refuses_an_sdxl_folder_as_a_load_does(copied, capsys):
    SDXL_SHAPES["class"](copied)
    assert main(["inspect", "-m", str(copied), "-s", "lidb", "--no-files"]) == 1
    err = capsys.readouterr().err
    assert f"{copied}: an SDXL pipeline (StableDiffusionXLPipeline)" in err.replace("\n", "") and "Traceback" not in err
