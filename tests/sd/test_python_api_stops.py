"""The Python API's reports on a kept model and on an in-process Ctrl-C: a stop at the very start of a personalize
stage is told as one a moment later, a stop inside the finetune keeps the finetune's own line, draw_to_folder
records the adapters attached to the model, and a model given to run_train with an initial adapter comes back bit
for bit."""

from __future__ import annotations

import _thread
import json

import pytest
import torch

import lowdim
from lowdim_sd import runs
from lowdim_sd.generate import GenerateConfig, attach_adapters, draw_to_folder
from lowdim_sd.personalize import PersonalizeJob, personalize
from lowdim_sd.train import TrainConfig
from lowdim_sd.workflows import TrainJob, run_train


@pytest.fixture(autouse=True)
def _threads(one_thread):
    """One torch thread, as the other SD tests: tiny models run no faster on more."""


def stop_when_heard(stage: str):
    """A listener that raises Ctrl-C in the main thread as ``stage`` is announced (0 of 1), before it does anything."""
    def heard(label: str, done: int, total: int) -> None:
        if label == stage and done == 0:
            _thread.interrupt_main()
    return heard


@pytest.mark.parametrize(("stage", "note"), [("load model", "interrupted during 'load model'; nothing was kept"),
                                             ("preview", "interrupted during the preview; the adapter is complete")])
def test_a_stop_as_a_personalize_stage_starts_is_told_as_one_inside_it(tiny_sd, face, tmp_path, stage, note):
    job = PersonalizeJob(model=str(tiny_sd), image=face, out=tmp_path / "me", steps=1, crop=False, preview=True,
                         preview_steps=1)
    with pytest.raises(runs.Interrupted, match=note), runs.listen(stop_when_heard(stage)):
        personalize(job, progress=False)
    assert (tmp_path / "me" / "adapter.safetensors").is_file() == (stage == "preview")


def test_a_stop_inside_the_finetune_is_told_in_the_finetunes_own_words(tiny_sd, face, tmp_path):
    def at_the_first_step(label: str, done: int, total: int) -> None:
        if label == "training" and done == 1:
            _thread.interrupt_main()

    job = PersonalizeJob(model=str(tiny_sd), image=face, out=tmp_path / "me", steps=2, crop=False, preview=False)
    with pytest.raises(runs.Interrupted) as stopped, runs.listen(at_the_first_step):
        personalize(job, progress=False)
    # the train loop names the step it stopped at; the stage's generic line would hide it
    assert " step " in str(stopped.value) and "'fast finetune'" not in str(stopped.value), str(stopped.value)


@pytest.fixture(scope="module")
def adapter(tiny_sd, tmp_path_factory):
    """A trained LoRA file of the tiny model, whose token is zwx."""
    from PIL import Image

    out = tmp_path_factory.mktemp("adapter")
    Image.new("RGB", (32, 32), (120, 80, 60)).save(out / "face.png")
    job = TrainJob(model=str(tiny_sd), images=[out / "face.png"], out=out / "run", space="lora",
                   config=TrainConfig(steps=1, token="zwx", learning_rate=1e-2))
    return run_train(job, progress=False).outputs[0]


def test_draw_to_folder_records_the_adapters_attached_to_the_model(model, adapter, tmp_path):
    tokens = attach_adapters(model, [(adapter, 0.8)])
    try:
        draw_to_folder(model, GenerateConfig(prompts="a [V] face", steps=1, resolution=16), tmp_path / "drawn", tokens)
    finally:
        lowdim.Adapters(model.modules).remove_all()
    settings = json.loads((tmp_path / "drawn" / "prompts.json").read_text(encoding="utf-8"))["settings"]
    assert settings["adapters"] == [{"file": str(adapter), "scale": 0.8, "token": "zwx"}]
    draw_to_folder(model, GenerateConfig(prompts="a face", steps=1, resolution=16), tmp_path / "plain")
    plain = json.loads((tmp_path / "plain" / "prompts.json").read_text(encoding="utf-8"))["settings"]
    assert plain["adapters"] == []  # removed since: not recorded for the next folder


def test_a_model_given_with_an_initial_adapter_comes_back_bit_for_bit(model, adapter, face, tmp_path):
    before = {key: value.clone() for key, value in model.modules.state_dict().items()}
    job = TrainJob(model=model.name, images=[face], out=tmp_path / "relaxed", initial=adapter,
                   config=TrainConfig(steps=1, token="zwx"))  # the initial adapter's word
    run_train(job, progress=False, model=model)
    after = model.modules.state_dict()
    assert after.keys() == before.keys()
    assert [key for key in before if not torch.equal(before[key], after[key])] == []
