"""`lowdim eval`'s DINO and CLIP load only a model of the kind they need, whole: a folder of another kind, one
whose weights would be partly random, a cut-short weights file or a folder of pickles is skipped with one line
that names it, and the other metrics still run (docs/eval.md, Bad input)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from tiny_metric_models import LAYERS, save_tiny_clip, save_tiny_vit  # tests/, on the path as pytest puts it

from lowdim.metrics import MetricUnavailable, Sample
from lowdim_sd.eval.paper_metrics import ClipImageMetric, ClipTextMetric, DinoMetric
from lowdim_sd.eval.report import load_metrics, run_metrics

WORDS = ["a", "photo", "of", "face", "sks"]
SIDE = 32
NEEDS_VIT = r"the DINO metric needs a ViT \(model_type 'vit'\), e.g\. facebook/dino-vits16"
NEEDS_CLIP = r"the CLIP metrics need a CLIP model \(model_type 'clip'\), e.g\. openai/clip-vit-large-patch14"


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("model-kinds")


@pytest.fixture(scope="module")
def vit(folders) -> Path:
    return save_tiny_vit(folders / "vit", side=SIDE, seed=0)


@pytest.fixture(scope="module")
def clip(folders) -> Path:
    return save_tiny_clip(folders / "clip", WORDS, side=SIDE, seed=0)


@pytest.fixture(scope="module")
def bert(folders) -> Path:
    from transformers import BertConfig, BertModel

    folder = folders / "bert"
    BertModel(BertConfig(vocab_size=16, max_position_embeddings=16, **LAYERS)).save_pretrained(folder)
    return folder


def copy_of(folder: Path, to: Path) -> Path:
    to.mkdir(parents=True)
    for file in folder.iterdir():
        (to / file.name).write_bytes(file.read_bytes())
    return to


def cut_short(folder: Path, to: Path) -> Path:
    """The folder with its model.safetensors cut to half its size, as an interrupted download leaves it."""
    copy = copy_of(folder, to)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return copy


def face(shade: int) -> Image.Image:
    return Image.new("RGB", (40, 40), (shade, 255 - shade, 90))


def one_line(error: pytest.ExceptionInfo[MetricUnavailable]) -> str:
    text = str(error.value)
    assert "\n" not in text and "above report" not in text and "huggingface.co" not in text
    return text


def test_a_bert_folder_as_dino_is_refused_not_loaded_as_a_random_vit(bert):
    with pytest.raises(MetricUnavailable, match=f"{bert}.*model_type 'bert'.*{NEEDS_VIT}") as error:
        DinoMetric(str(bert), device="cpu")
    one_line(error)


def test_a_clip_folder_as_dino_is_refused(clip):
    with pytest.raises(MetricUnavailable, match=f"{clip}.*model_type 'clip'.*{NEEDS_VIT}") as error:
        DinoMetric(str(clip), device="cpu")
    one_line(error)


def test_a_dinov2_folder_as_dino_is_refused_without_pointing_at_a_hidden_report(folders):
    from transformers import Dinov2Config, Dinov2Model

    folder = folders / "dinov2"
    Dinov2Model(Dinov2Config(image_size=SIDE, patch_size=8, **LAYERS)).save_pretrained(folder)
    with pytest.raises(MetricUnavailable, match=f"{folder}.*model_type 'dinov2'.*{NEEDS_VIT}") as error:
        DinoMetric(str(folder), device="cpu")
    one_line(error)


def test_bert_weights_with_clips_processor_as_clip_are_refused(bert, clip, folders):
    folder = copy_of(bert, folders / "bert-clip")
    for name in ("preprocessor_config.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        if (clip / name).exists():
            (folder / name).write_bytes((clip / name).read_bytes())
    for metric in (ClipImageMetric, ClipTextMetric):
        with pytest.raises(MetricUnavailable, match=f"{folder}.*model_type 'bert'.*{NEEDS_CLIP}") as error:
            metric(str(folder), device="cpu")
        one_line(error)


def test_a_vit_missing_a_weight_is_refused_naming_it(vit, folders):
    folder = copy_of(vit, folders / "vit-short")
    weights = load_file(str(folder / "model.safetensors"))
    del weights["embeddings.cls_token"]
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(MetricUnavailable, match=rf"{folder}.*1 of the DINO model's weights.*embeddings\.cls_token"):
        DinoMetric(str(folder), device="cpu")


def test_a_dino_processor_for_another_picture_size_is_refused_at_load(vit, folders):
    from transformers import ViTImageProcessor

    folder = copy_of(vit, folders / "vit-64")
    ViTImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder)
    with pytest.raises(MetricUnavailable, match=f"{folder}.*64x64.*{SIDE}x{SIDE}"):
        DinoMetric(str(folder), device="cpu")


@pytest.mark.parametrize("kind", ["dino", "clip"])
def test_a_cut_short_weights_file_is_named_not_a_traceback(kind, vit, clip, folders):
    folder = cut_short(vit if kind == "dino" else clip, folders / f"{kind}-cut")
    metric = DinoMetric if kind == "dino" else ClipImageMetric
    with pytest.raises(MetricUnavailable, match=f"{folder / 'model.safetensors'} is cut short or damaged") as error:
        metric(str(folder), device="cpu")
    one_line(error)


def test_a_cut_short_dino_leaves_the_other_metrics_running(vit, clip, folders):
    folder = cut_short(vit, folders / "dino-cut-run")
    loaded, skipped = load_metrics(["dino", "clip-i"], {"dino": {"model": str(folder)}, "clip-i": {"model": str(clip)}},
                                   shared={"device": "cpu"})
    assert list(loaded) == ["clip-i"] and "cut short or damaged" in skipped["dino"]
    report = run_metrics([Sample(face(10), (face(200),), "a photo of sks face")], loaded, skipped)
    assert report.results[0].scores[0] is not None and "dino" in report.skipped_metrics


def test_a_cut_short_file_in_the_hugging_face_cache_is_named(vit, tmp_path, monkeypatch):
    """A partial blob in ~/.cache/huggingface is named too (offline; the cache here is tmp_path)."""
    from huggingface_hub import constants

    from lowdim_sd.eval import hub

    snapshot = tmp_path / "models--lowdim-tests--dino" / "snapshots" / ("0" * 40)
    cut_short(vit, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "hub_reachable", lambda: False)
    with pytest.raises(MetricUnavailable) as error:
        DinoMetric("lowdim-tests/dino", device="cpu")
    assert "could not load the DINO model 'lowdim-tests/dino'" in one_line(error)
    assert f"{snapshot / 'model.safetensors'} is cut short or damaged" in one_line(error)


def test_a_folder_of_pytorch_model_bin_only_says_why_and_how_without_unpickling(vit, folders, monkeypatch):
    folder = folders / "dino-bin"
    folder.mkdir()
    (folder / "config.json").write_text((vit / "config.json").read_text())
    torch.save(load_file(str(vit / "model.safetensors")), folder / "pytorch_model.bin")  # the user's own file

    def refuse(*args, **kwargs):
        raise AssertionError("a pickle was loaded")

    monkeypatch.setattr(torch, "load", refuse)
    with pytest.raises(MetricUnavailable) as error:
        DinoMetric(str(folder), device="cpu")
    assert f"{folder} holds pytorch_model.bin only; lowdim loads weights from safetensors only (no pickle): " \
           "download the model's safetensors (for facebook/dino-vits16: `--revision refs/pr/1`) or convert it" \
           in one_line(error)


def test_right_folders_still_load_and_score(vit, clip):
    sample = Sample(face(10), (face(10), face(200)), "a photo of sks face")
    for metric in (DinoMetric(str(vit), device="cpu"), ClipImageMetric(str(clip), device="cpu"),
                   ClipTextMetric(str(clip), device="cpu")):
        (score,) = metric.score([sample])
        assert score is not None and -1 <= score <= 1


def test_the_offline_docs_say_which_dino_file_is_needed():
    docs = (Path(__file__).parents[2] / "docs" / "eval.md").read_text()
    offline = docs.split("### Offline behaviour")[1].split("###")[0]
    assert "pytorch_model.bin" in offline and "--revision refs/pr/1" in offline and "safetensors" in offline


def test_a_misspelt_folder_name_is_said_to_be_no_folder_here_too(tmp_path, monkeypatch):
    """A bare name (no slash) is more likely a folder typed wrong than a hub id: the line says it is neither."""
    from lowdim_sd.eval import hub

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(hub, "hub_reachable", lambda: False)
    with pytest.raises(MetricUnavailable) as error:
        DinoMetric("dino-vit", device="cpu")
    assert "no folder dino-vit here, and DINO model 'dino-vit' is not in the Hugging Face cache" in one_line(error)


def test_a_vit_folder_of_pickles_given_as_clip_is_told_its_kind_first(vit, folders):
    """Its kind is what is wrong: downloading its safetensors would only meet the next refusal."""
    folder = folders / "vit-bin-as-clip"
    folder.mkdir()
    (folder / "config.json").write_text((vit / "config.json").read_text())
    torch.save(load_file(str(vit / "model.safetensors")), folder / "pytorch_model.bin")
    with pytest.raises(MetricUnavailable, match=f"model_type 'vit'.*{NEEDS_CLIP}") as error:
        ClipImageMetric(str(folder), device="cpu")
    assert "pytorch_model.bin" not in one_line(error)
