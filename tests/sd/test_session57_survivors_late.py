"""What mutation testing of session 57's last changes found untested (FGN):

- a UNet weight of as many values as its config's tensor but another shape (a transposed matrix) is named, tensor
  and both shapes, before diffusers reads the folder;
- the UNet's cross-attention width is checked against the text encoder's wherever one block of a per-block list
  differs, and, for a UNet with ``encoder_hid_dim``, that width (its projection takes the text encoder's tokens),
  not ``cross_attention_dim``;
- the web page's check as a photo is dropped says a folder's parts do not fit, from its JSON files alone: it opens
  no weight file (the load checks those);
- a merged single file whose recorded configs folder has since moved is refused offline with the cure, pass
  --model-config, not diffusers' words about the old path;
- show of an adapter made on a lowdim single file that finds its own configs (the base folder or the configs
  folder its merge recorded) offers its use line with no --model-config; on a bare checkpoint it asks for one;
- a --full --overwrite run into an adapter run's folder says it removed OUT/adapter.safetensors, and names it in no
  warning of adapters left as they were;
- a tab whose event fails again while its earlier line is still kept is the newest: the page's bound on kept lines
  pushes out another tab's older line first, not that tab's new one;
- personalize's draw line, and the interrupted run's, quote a --model-config folder with a space in its name: the
  line runs as printed."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file

from lowdim_cli.main import main
from lowdim_sd.loading import ModelLoadError, load_pipeline

UNET_WEIGHTS = "diffusion_pytorch_model.safetensors"
PARTS_OF_TWO = "parts of two different models"


@pytest.fixture
def copied(tiny_sd, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_sd, tmp_path / "pipe"))


def edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def page_check(folder: Path) -> None:
    """The web page's check of a model folder as a photo is dropped (lowdim ui)."""
    from lowdim_sd.ui.checks import refuse_what_a_load_refuses

    refuse_what_a_load_refuses(folder)


def shard(unet: Path) -> None:
    """The UNet's weights saved again in several files and their index, as big models are."""
    from diffusers import UNet2DConditionModel

    model = UNet2DConditionModel.from_pretrained(unet)
    (unet / UNET_WEIGHTS).unlink()
    model.save_pretrained(unet, max_shard_size="100KB")
    assert len(list(unet.glob("*.safetensors"))) > 2


@pytest.mark.parametrize("sharded", [False, True], ids=["one-file", "sharded"])
def test_a_weight_of_the_right_size_but_another_shape_is_named_before_diffusers_reads_it(copied, monkeypatch,
                                                                                         sharded):
    from diffusers import StableDiffusionPipeline

    name = "time_embedding.linear_1.weight"  # in the first of the shards
    if sharded:
        shard(copied / "unet")
    (weights,) = [path for path in (copied / "unet").glob("*.safetensors") if name in load_file(str(path))]
    assert not sharded or weights != max((copied / "unet").glob("*.safetensors"))  # not the last shard read
    tensors = load_file(str(weights))
    rows, columns = tensors[name].shape
    assert rows != columns  # transposed, it holds as many values in another shape
    tensors[name] = tensors[name].T.contiguous()
    save_file(tensors, str(weights))
    monkeypatch.setattr(StableDiffusionPipeline, "from_pretrained",
                        lambda *args, **kwargs: pytest.fail("diffusers read the folder"))
    with pytest.raises(ModelLoadError) as refused:
        load_pipeline(str(copied), torch.float32)
    assert str(refused.value) == (f"{copied / 'unet' / 'config.json'} does not fit its weights ({name}: config "
                                  f"[{rows}, {columns}], file [{columns}, {rows}]); an edited config?")


def test_one_block_of_another_cross_attention_width_is_parts_of_two_models(copied):
    edit_json(copied / "unet" / "config.json", cross_attention_dim=[32, 64])  # the text encoder gives 32
    with pytest.raises(ModelLoadError, match=PARTS_OF_TWO) as refused:
        page_check(copied)
    assert "cross_attention_dim [32, 64], but" in str(refused.value)


def test_a_unet_projecting_the_text_encoder_s_tokens_is_checked_by_its_encoder_hid_dim(copied):
    unet = copied / "unet" / "config.json"
    edit_json(unet, encoder_hid_dim=32, cross_attention_dim=64)  # takes the encoder's 32, projects them to 64
    page_check(copied)
    edit_json(unet, encoder_hid_dim=64, cross_attention_dim=32)
    with pytest.raises(ModelLoadError, match=PARTS_OF_TWO) as refused:
        page_check(copied)
    assert f"{unet}: encoder_hid_dim 64, but" in str(refused.value)


def test_the_page_says_parts_do_not_fit_from_the_json_files_without_opening_a_weight_file(copied, monkeypatch):
    import safetensors

    import lowdim_sd.weights_folder as weights_folder

    opened: list[str] = []

    def safe_open(path, *args, **kwargs):
        opened.append(str(path))
        return safetensors.safe_open(path, *args, **kwargs)

    monkeypatch.setattr(weights_folder, "safe_open", safe_open)
    page_check(copied)  # a folder whose parts fit passes
    edit_json(copied / "unet" / "config.json", cross_attention_dim=64)
    with pytest.raises(ModelLoadError, match=PARTS_OF_TWO):
        page_check(copied)
    assert opened == []  # a 3.4 GB UNet's header is the load's to read, not the photo drop's


def test_a_merge_whose_recorded_configs_folder_moved_asks_for_model_config_offline(tiny_sd, tmp_path, capsys,
                                                                                  monkeypatch, one_thread):
    from huggingface_hub import constants

    from lowdim_sd.ldm_checkpoint import save_single_file
    from lowdim_sd.merged_model import RECORD_KEY
    from lowdim_sd.model_names import CONFIGS_KEY
    from lowdim_sd.tiny import build_tiny_pipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    configs = Path(shutil.copytree(tiny_sd, tmp_path / "configs"))
    base = str(tmp_path / "mine.safetensors")  # a user's own checkpoint, since deleted
    record = {"base_model": base, "adapters": [], "tokens": [], CONFIGS_KEY: str(configs)}
    merged = save_single_file(build_tiny_pipeline(0), tmp_path / "merged.safetensors", base_model=base,
                              extra={RECORD_KEY: json.dumps(record)})
    configs.rename(tmp_path / "moved")
    capsys.readouterr()
    assert main(["generate", "-m", str(merged), "-p", "x", "--steps", "1", "-o", str(tmp_path / "g")]) == 1
    said = " ".join(capsys.readouterr().err.split())
    assert "pass --model-config" in said, said
    # the folder it no longer finds is named as gone, not read as the model's configs
    assert f"the configs folder its merge recorded, {configs}, is no model folder any more" in said, said


def with_base_model(adapter: Path, base: Path, out: Path) -> Path:
    """``adapter`` as made on ``base``: its header names it."""
    from safetensors import safe_open

    with safe_open(str(adapter), framework="pt") as file:
        metadata = file.metadata()
    save_file(load_file(str(adapter)), str(out), metadata={**metadata, "base_model": str(base)})
    return out


@pytest.mark.parametrize("finds", ["base-folder", "recorded-configs", "bare"])
def test_show_asks_for_model_config_only_where_the_adapter_s_single_file_base_finds_no_configs(
        untrained_adapter, tiny_sd, tmp_path, capsys, monkeypatch, finds):
    from huggingface_hub import constants

    from lowdim_sd.ldm_checkpoint import save_single_file
    from lowdim_sd.merged_model import RECORD_KEY
    from lowdim_sd.model_names import CONFIGS_KEY
    from lowdim_sd.tiny import build_tiny_pipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    base = tmp_path / "base.safetensors"
    if finds == "base-folder":  # a merge of the folder: its record names it
        save_single_file(build_tiny_pipeline(0), base, base_model=str(tiny_sd))
    elif finds == "recorded-configs":  # a merge of a bare checkpoint read with --model-config
        record = {"base_model": str(tmp_path / "mine.safetensors"), "adapters": [], "tokens": [],
                  CONFIGS_KEY: str(tiny_sd)}
        save_single_file(build_tiny_pipeline(0), base, base_model=str(tmp_path / "mine.safetensors"),
                         extra={RECORD_KEY: json.dumps(record)})
    else:  # a checkpoint with A1111's bare metadata
        save_single_file(build_tiny_pipeline(0), tmp_path / "ldm.safetensors")
        save_file(load_file(str(tmp_path / "ldm.safetensors")), str(base), metadata={"format": "pt"})
    adapter = with_base_model(untrained_adapter, base, tmp_path / "me.safetensors")
    capsys.readouterr()
    assert main(["show", str(adapter)]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert f"use it: lowdim generate -m {base}" in shown, shown
    assert ("--model-config FOLDER" in shown) == (finds == "bare"), shown


def test_a_full_overwrite_names_the_adapter_it_removes_in_no_warning_of_adapters_left(untrained_adapter, tiny_sd,
                                                                                     tmp_path, capsys, one_thread):
    from cli_train_runs import one_subject, run  # tests/sd, on the path as pytest puts it

    out = tmp_path / "o"
    out.mkdir()
    shutil.copy(untrained_adapter, out / "adapter.safetensors")  # an adapter run's output
    code, text = run(capsys, "train", "-m", tiny_sd, "-i", one_subject(tmp_path / "refs", side=16), "-o", out,
                     "--steps", 1, "--no-augment", "--full", "--overwrite")
    assert code == 0, text
    assert sorted(path.name for path in out.iterdir()) == ["model"]
    assert "removed" in text and str(out / "adapter.safetensors") in text, text
    assert "left as it was" not in text and "left as they were" not in text, text


def test_a_line_kept_anew_for_a_tab_still_kept_goes_last():
    pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")
    from lowdim_sd.ui.page_parts import KEPT_SESSIONS, BySession

    lines: BySession[str] = BySession()
    lines.keep("mine", "no run to draw")
    for index in range(KEPT_SESSIONS - 1):  # full: mine is the oldest
        lines.keep(f"tab-{index}", f"line {index}")
    lines.keep("mine", "no [V] in the prompt")  # my tab fails again: now the newest
    lines.keep("another", "no photo")  # one over the bound
    assert lines.take(SimpleNamespace(session_hash="mine")) == "no [V] in the prompt"
    assert lines.take(SimpleNamespace(session_hash="tab-0")) is None  # the oldest went
    assert lines.take(SimpleNamespace(session_hash="tab-1")) == "line 1"
    assert lines.take(SimpleNamespace(session_hash="another")) == "no photo"


def bare_checkpoint(folder: Path) -> Path:
    """The tiny pipeline as one checkpoint with A1111's bare metadata: its configs come from --model-config."""
    from lowdim_sd.ldm_checkpoint import save_single_file
    from lowdim_sd.tiny import build_tiny_pipeline

    written = save_single_file(build_tiny_pipeline(0), folder / "ldm.safetensors")
    save_file(load_file(str(written)), str(folder / "mine.safetensors"), metadata={"format": "pt"})
    return folder / "mine.safetensors"


def model_config_of(line: str) -> str:
    words = shlex.split(line[line.index("lowdim generate"):].splitlines()[0])
    return words[words.index("--model-config") + 1]


def test_personalize_s_draw_line_quotes_a_model_config_folder_with_a_space(tiny_sd, face, tmp_path, capsys,
                                                                           one_thread):
    from cli_train_runs import run  # tests/sd, on the path as pytest puts it

    configs = shutil.copytree(tiny_sd, tmp_path / "my configs")
    code, text = run(capsys, "personalize", "-m", bare_checkpoint(tmp_path), "--model-config", configs, "-i", face,
                     "-o", tmp_path / "me", "--steps", 1, "--no-preview", "--no-crop")
    assert code == 0, text
    assert model_config_of(text[text.index("draw it:"):]) == str(configs), text


def test_the_interrupted_runs_draw_line_quotes_a_model_config_folder_with_a_space(tmp_path):
    from lowdim.option_words import command_line
    from lowdim_sd.personalize_stages import draw_line

    job = SimpleNamespace(model=str(tmp_path / "mine.safetensors"), model_config=str(tmp_path / "my configs"))
    result = SimpleNamespace(adapter=tmp_path / "me" / "adapter.safetensors", subject_prompt=lambda: "a [V] face")
    with command_line():  # the command's words: a Python caller is told the calls
        line = draw_line(result, job)
    assert model_config_of(line) == str(tmp_path / "my configs")
