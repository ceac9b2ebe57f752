"""Session 58's late mutation audit (FGX): what the session's later commits promise a user that no test held yet;
the mutant each test kills is in the audit's report."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from lowdim.errors import LowdimError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_pipe(tmp_path_factory) -> Path:
    from lowdim_sd.tiny import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny") / "pipe", seed=0)


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "face.png"
    Image.new("RGB", (32, 32), (120, 90, 70)).save(path)
    return path


def tree(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))}


# -- an --out holding the model where the run writes or clears is refused, wherever under that path it lies -------


@pytest.mark.parametrize("under", ["checkpoints/base", "model/nested/base"])
def test_train_refuses_an_out_whose_checkpoints_or_model_folder_holds_the_model(tiny_pipe, tmp_path, photo, under):
    """``train -m run/checkpoints/base -o run``: the run writes (and --overwrite clears) run/checkpoints, so a
    model kept anywhere inside it would change or go; refused before anything is written."""
    from lowdim_sd.workflows import TrainJob, check_train_job

    out = tmp_path / "run"
    model = Path(shutil.copytree(tiny_pipe, out / under))
    before = tree(out)
    with pytest.raises(LowdimError, match="holds the base model at") as refused:
        check_train_job(TrainJob(model=str(model), images=[photo], out=out))
    assert str(out / under.split("/")[0]) in str(refused.value)
    assert tree(out) == before


def test_personalize_refuses_an_out_whose_checkpoints_folder_holds_the_model(tiny_pipe, tmp_path, photo):
    from lowdim_sd.personalize import PersonalizeJob
    from lowdim_sd.personalize_checks import check_inputs

    out = tmp_path / "run"
    model = Path(shutil.copytree(tiny_pipe, out / "checkpoints" / "base"))
    with pytest.raises(LowdimError, match=f"holds the base model at {out / 'checkpoints'}"):
        check_inputs(PersonalizeJob(model=str(model), image=photo, out=out, preview=False))


def test_a_model_given_by_a_relative_path_or_a_link_is_still_refused_as_the_out(tiny_pipe, tmp_path, photo,
                                                                               monkeypatch):
    """``-m mine -o mine/unet`` from the folder holding it, or ``-m link -o mine/unet``: the same model."""
    from lowdim_sd.workflows import TrainJob, check_train_job

    Path(shutil.copytree(tiny_pipe, tmp_path / "mine"))
    (tmp_path / "link").symlink_to(tmp_path / "mine")
    monkeypatch.chdir(tmp_path)
    for model in ("mine", str(tmp_path / "link")):
        with pytest.raises(LowdimError, match="is inside the base model"):
            check_train_job(TrainJob(model=model, images=[photo], out=tmp_path / "mine" / "unet"))


# -- a folder that is no part of a pipeline is not called one --------------------------------------------------------


def test_a_folder_inside_a_pipeline_that_its_index_does_not_list_is_not_called_its_part(tiny_pipe, tmp_path):
    """``pipe/samples`` (pictures kept beside the model) given as the model: not a pipeline, and no part of one."""
    from lowdim_sd.loading import ModelLoadError, load_pipeline

    copied = Path(shutil.copytree(tiny_pipe, tmp_path / "pipe"))
    (copied / "samples").mkdir()
    with pytest.raises(ModelLoadError) as refused:
        load_pipeline(str(copied / "samples"), torch.float32)
    said = str(refused.value)
    assert said.startswith(f"{copied / 'samples'}: not a diffusers pipeline folder") and "part of" not in said


# -- lowdim ui: a closed tab's stopped job, kept for its reload -------------------------------------------------------


def _closed_tabs_job(studio, owner: str) -> None:
    """A job of ``owner``'s tab stopped at its step as the tab was closed (Gradio's unload: ``tab_closed``)."""
    from lowdim_sd.ui.studio import Stopped

    with pytest.raises(Stopped), studio.job("personalization", owner) as running:
        running.run = f"run-of-{owner}"
        running.closed = True
        raise KeyboardInterrupt  # what the stop asked makes the job's next step raise


def test_the_oldest_closed_tabs_line_goes_first_and_a_tab_closed_again_counts_as_new(tmp_path, monkeypatch):
    from lowdim_sd.ui import studio as studio_module

    monkeypatch.setattr(studio_module, "KEPT_CLOSED_TABS", 2)
    console: list[str] = []
    studio = studio_module.Studio(studio_module.StudioConfig(model="tinyfaces", out=tmp_path / "ui"), console.append)
    for owner in ("tab-a", "tab-b", "tab-a", "tab-c"):  # tab-a reloaded twice: its newest line is the newest kept
        _closed_tabs_job(studio, owner)
    assert len(console) == 4
    assert studio.closed_tab_line("tab-b") is None  # the oldest, gone for the newer ones
    assert "(run run-of-tab-a)" in (studio.closed_tab_line("tab-a") or "")
    assert "(run run-of-tab-c)" in (studio.closed_tab_line("tab-c") or "")


def test_a_closed_tabs_job_stopped_as_the_server_closes_says_the_server_closed(tmp_path):
    """On Ctrl-C the server stops every job: the console does not blame a tab, and no reload will come for it."""
    import threading
    import time

    from lowdim_sd import stopping
    from lowdim_sd.ui.studio import Stopped, Studio, StudioConfig

    console: list[str] = []
    studio = Studio(StudioConfig(model="tinyfaces", out=tmp_path / "ui"), console.append)
    entered, ended = threading.Event(), []

    def job() -> None:
        try:
            with studio.job("personalization", "tab-1") as running:
                running.closed = True  # its tab's unload came first
                entered.set()
                for _ in range(1000):
                    stopping.check()
                    time.sleep(0.01)
        except Stopped as stopped:
            ended.append(str(stopped))

    thread = threading.Thread(target=job)
    thread.start()
    assert entered.wait(10)
    assert studio.close() == "personalization"
    thread.join(10)
    assert ended and ended[0].endswith("as the server is closing; nothing of it was kept")
    assert console == [] and studio.closed_tab_line("tab-1") is None


def test_a_part_folder_given_as_dot_from_inside_it_points_to_its_pipeline(tiny_pipe, monkeypatch):
    """``cd model/unet; lowdim generate -m .``: '.' is the unet part, and its pipeline is the folder above."""
    from lowdim_sd.loading import ModelLoadError, load_pipeline

    monkeypatch.chdir(tiny_pipe / "unet")
    with pytest.raises(ModelLoadError) as refused:
        load_pipeline(".", torch.float32)
    assert str(refused.value).endswith(f"it is the unet part of the diffusers pipeline {tiny_pipe}: pass {tiny_pipe}")


# -- a folder model_index.json lists with no class is never opened ---------------------------------------------------


class _Trap:
    """A pickle that, once unpickled, leaves a file at ``path``."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_a_pickle_in_a_folder_listed_with_no_class_is_never_read_nor_refused(tiny_pipe, tmp_path):
    """An entry ``"extras": [null, null]`` is one diffusers never loads: its old pickle is no reason to refuse."""
    import json
    import pickle

    from lowdim_sd.loading import load_pipeline
    from lowdim_sd.pipeline_parts import check_model_folder

    copied = Path(shutil.copytree(tiny_pipe, tmp_path / "pipe"))
    marker = tmp_path / "unpickled"
    (copied / "extras").mkdir()
    (copied / "extras" / "pytorch_model.bin").write_bytes(pickle.dumps(_Trap(marker)))
    index = json.loads((copied / "model_index.json").read_text())
    (copied / "model_index.json").write_text(json.dumps({**index, "extras": [None, None]}))
    check_model_folder(copied)
    assert load_pipeline(str(copied), torch.float32).unet is not None and not marker.exists()


def test_an_unused_part_whose_config_and_weights_differ_is_never_checked(tiny_pipe, tmp_path):
    """A copy of an IP-adapter pipeline lists an ``image_encoder`` lowdim passes as None: a trimmed or stale copy of
    it (its config a full CLIP vision model, its weights not) stops nothing, as it is never loaded."""
    import json

    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig

    from lowdim_sd.loading import load_pipeline
    from lowdim_sd.pipeline_parts import check_model_folder

    copied = Path(shutil.copytree(tiny_pipe, tmp_path / "pipe"))
    (copied / "image_encoder").mkdir()
    CLIPVisionConfig().to_json_file(str(copied / "image_encoder" / "config.json"))
    save_file({"stub": torch.zeros(2)}, str(copied / "image_encoder" / "model.safetensors"))
    index = json.loads((copied / "model_index.json").read_text())
    (copied / "model_index.json").write_text(
        json.dumps({**index, "image_encoder": ["transformers", "CLIPVisionModelWithProjection"]}))
    check_model_folder(copied)
    assert load_pipeline(str(copied), torch.float32).unet is not None


def test_a_single_file_named_relatively_with_model_config_is_not_warned_unused(tiny_pipe, tmp_path, monkeypatch):
    """``-m mine.safetensors --model-config ./sd15`` from the file's folder: the name reads like a hub id, but the
    file is there, and the option is what it loads with."""
    import warnings

    from lowdim_sd.ldm_checkpoint import save_single_file
    from lowdim_sd.loading import load_sd
    from lowdim_sd.tiny import build_tiny_pipeline

    save_single_file(build_tiny_pipeline(0), tmp_path / "mine.safetensors")
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        load_sd("mine.safetensors", "cpu", "fp32", config=str(tiny_pipe))
    assert not [w for w in said if "not used" in str(w.message)]


# -- lowdim.inject: a wildcard meeting 1x1 convolutions a layer set's types leave out -------------------------------


def test_a_wrapped_1x1_convolution_left_out_is_counted_once():
    """A conv already carrying an adapter is one layer (its wrapper), not two (the wrapper and its base_layer)."""
    import warnings

    from torch import nn

    import lowdim
    from lowdim.injection.select import LayerSet

    model = nn.Sequential(nn.Linear(8, 8), nn.Conv2d(8, 8, 1))
    space = lowdim.get_space("lora", rank=2)
    lowdim.inject(model, space, ["1"])
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        lowdim.inject(model, space, LayerSet("all", ("*",)), name="b")
    lines = [str(w.message) for w in said if "1x1 convolution" in str(w.message)]
    assert len(lines) == 1 and "also match 1 1x1 convolution (e.g. 1)," in lines[0], lines


# -- eval: references that are all generated pictures being scored ------------------------------------------------


def test_a_refusal_of_many_generated_references_names_three_and_counts_the_rest(tmp_path):
    """An image whose references are the other 5 pictures being scored: the line names a few, not a wall of paths."""
    from lowdim_sd.eval.prompts_file import EvalFolderError
    from lowdim_sd.eval.reference_images import ReferenceChoice

    pictures = []
    for number in range(6):
        pictures.append(tmp_path / f"{number}.png")
        Image.new("RGB", (8, 8)).save(pictures[-1])
    choice = ReferenceChoice({path.name: path for path in pictures})
    with pytest.raises(EvalFolderError) as refused:
        choice.for_image("0.png", pictures[1:], "prompts.json")
    said = str(refused.value)
    assert f"({pictures[1]}, {pictures[2]}, {pictures[3]} and 2 more)" in said
    assert str(pictures[4]) not in said and str(pictures[5]) not in said


def test_the_note_names_a_generated_reference_as_first_given(tmp_path):
    from lowdim_sd.eval.reference_images import ReferenceChoice

    picture = tmp_path / "0.png"
    Image.new("RGB", (8, 8)).save(picture)
    photo = tmp_path / "photo.png"
    Image.new("RGB", (8, 8)).save(photo)
    (tmp_path / "sub").mkdir()
    choice = ReferenceChoice({"0.png": picture})
    choice.files([picture, photo])
    choice.files([tmp_path / "sub" / ".." / "0.png", photo])  # the same picture, spelled another way
    [note] = choice.notes()
    assert f"(e.g. {picture})" in note


# -- export -o: a link to a file named in capitals ----------------------------------------------------------------


def test_an_out_link_to_a_safetensors_file_named_in_capitals_is_taken(tmp_path):
    """The name rule is the same for the file a link leads to as for a plain -o: case does not matter."""
    from lowdim_sd.export_checks import check_export_target

    (tmp_path / "store").mkdir()
    link = tmp_path / "me.safetensors"
    link.symlink_to(tmp_path / "store" / "ME.SAFETENSORS")
    assert check_export_target(link) == link
