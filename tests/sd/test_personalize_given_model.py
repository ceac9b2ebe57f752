"""``personalize(job, model=m)``: a pipeline the caller already has is personalized without a second load, and
handed back as it was given (weights, adapters, attention processors, requires_grad, no .grad, train modes)
whether the run succeeds, fails or is stopped; a model the job does not describe is refused in one line."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import lowdim
import lowdim_sd.personalize as personalizing
import lowdim_sd.train as engine
from lowdim.errors import LowdimError
from lowdim_sd import runs
from lowdim_sd.loading import SDModel
from lowdim_sd.personalize import PersonalizeJob, personalize


@pytest.fixture(autouse=True)
def _threads(one_thread):
    """One torch thread, as the other SD tests: tiny models run no faster on more."""


@pytest.fixture
def given(tiny_sd):
    """The tiny model as a caller loads it with diffusers: every parameter trainable, the UNet in train mode."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_sd), safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.unet.train()
    return SDModel.from_pipeline(pipe)


def as_it_is(model: SDModel) -> dict:
    """Everything a run could leave changed on the caller's model."""
    pipe = model.pipe
    parts = {"unet": pipe.unet, "text_encoder": pipe.text_encoder, "vae": pipe.vae}
    return {
        "weights": {key: value.detach().clone() for key, value in model.modules.state_dict().items()},
        "vae": {key: value.detach().clone() for key, value in pipe.vae.state_dict().items()},
        "adapters": lowdim.Adapters(model.modules).names(),
        "processors": {key: type(value) for key, value in pipe.unet.attn_processors.items()},
        "requires_grad": {f"{part}.{key}": p.requires_grad for part, module in parts.items()
                          for key, p in module.named_parameters()},
        "grads": [f"{part}.{key}" for part, module in parts.items() for key, p in module.named_parameters()
                  if p.grad is not None],
        "training": {f"{part}.{key}": m.training for part, module in parts.items()
                     for key, m in module.named_modules()},
        "tokens": len(pipe.tokenizer),
        "scheduler": (type(pipe.scheduler), dict(pipe.scheduler.config)),
        "progress bar": dict(pipe._progress_bar_config),
    }


def assert_as_given(model: SDModel, before: dict) -> None:
    after = as_it_is(model)
    for what in ("weights", "vae"):
        assert after[what].keys() == before[what].keys()
        changed = [key for key, value in before[what].items() if not torch.equal(after[what][key], value)]
        assert changed == [], what
    for what in before.keys() - {"weights", "vae"}:
        assert after[what] == before[what], what


def job_of(tiny_sd, face, out, **kwargs) -> PersonalizeJob:
    settings = {"steps": 2, "crop": False, "preview": True, "preview_steps": 1, **kwargs}
    return PersonalizeJob(model=str(tiny_sd), image=face, out=out, **settings)


def test_a_given_model_is_personalized_without_a_load_and_comes_back_as_given(given, tiny_sd, face, tmp_path,
                                                                              monkeypatch, make_hypernet):
    hypernet = make_hypernet(1)  # a prediction merged into the weights: they must come back bit for bit
    loaded = personalize(job_of(tiny_sd, face, tmp_path / "loaded", hypernet=hypernet), progress=False)
    before = as_it_is(given)
    assert before["requires_grad"] and all(before["requires_grad"].values())  # as diffusers leaves them

    def no_load(*args, **kwargs):
        raise AssertionError("personalize(model=) loaded a model")

    monkeypatch.setattr(personalizing, "load_sd", no_load)
    for attempt in range(2):  # and again on the same model: nothing of the first run is left in the way
        result = personalize(job_of(tiny_sd, face, tmp_path / str(attempt), hypernet=hypernet), progress=False,
                             model=given)
        assert "load model" not in result.stages
        assert result.preview is not None and result.preview.is_file()
        assert_as_given(given, before)
    # the same adapter a run that loads the model itself writes
    mine, theirs = load_file(result.adapter), load_file(loaded.adapter)
    assert mine.keys() == theirs.keys()
    assert [key for key, value in theirs.items() if not torch.equal(mine[key], value)] == []


def stop_in_the_finetune(monkeypatch, stop):
    real = engine._one_step

    def stops_at_step_one(*args, **kwargs):
        if args[5] == 1:
            raise stop("stopped")
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "_one_step", stops_at_step_one)


def stop_in_the_preview(monkeypatch, stop):
    def stops(*args, **kwargs):
        raise stop("stopped")

    monkeypatch.setattr(personalizing, "preview_unless_out_of_memory", stops)


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError])
@pytest.mark.parametrize("where", [stop_in_the_finetune, stop_in_the_preview], ids=["finetune", "preview"])
def test_a_given_model_comes_back_as_given_after_a_failure_or_a_stop(given, tiny_sd, face, tmp_path, monkeypatch,
                                                                     make_hypernet, where, stop):
    job = job_of(tiny_sd, face, tmp_path / "me", hypernet=make_hypernet(1))
    before = as_it_is(given)
    where(monkeypatch, stop)
    with pytest.raises(runs.Interrupted if stop is KeyboardInterrupt else RuntimeError):
        personalize(job, progress=False, model=given)
    assert_as_given(given, before)


def refusal(job: PersonalizeJob, model: SDModel) -> str:
    with pytest.raises(LowdimError) as refused:
        personalize(job, progress=False, model=model)
    message = str(refused.value)
    assert "\n" not in message and message.startswith("personalize(model=...): ")
    assert not job.out.exists()  # refused before the run's folder is made
    return message


def test_a_model_the_job_does_not_name_is_refused(given, face, tmp_path):
    message = refusal(PersonalizeJob(model="sd15", image=face, out=tmp_path / "me"), given)
    assert "the job names the model 'sd15'" in message and "PersonalizeJob.model" in message


def test_a_job_dtype_other_than_the_models_is_refused(given, tiny_sd, face, tmp_path):
    message = refusal(job_of(tiny_sd, face, tmp_path / "me", dtype="bf16"), given)
    assert "PersonalizeJob.dtype is 'bf16'" in message and "torch.float32" in message


def test_a_job_device_other_than_the_models_is_refused(given, tiny_sd, face, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # so 'cuda' is a device this machine has
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    message = refusal(job_of(tiny_sd, face, tmp_path / "me", device="cuda"), given)
    assert "PersonalizeJob.device is 'cuda'" in message and "on cpu" in message


def test_a_model_that_cannot_train_where_it_is_is_refused(given, tiny_sd, face, tmp_path):
    given.pipe.to(torch.float16)
    message = refusal(job_of(tiny_sd, face, tmp_path / "me"), SDModel.from_pipeline(given.pipe))
    assert "torch.float16 on cpu" in message and "CPUs do not train in fp16" in message


def test_a_hand_made_model_that_misstates_its_pipeline_is_refused(given, tiny_sd, face, tmp_path):
    given.pipe.to(torch.bfloat16)  # and the SDModel still says fp32: torch would fail deep in the finetune
    message = refusal(job_of(tiny_sd, face, tmp_path / "me"), given)
    assert "says torch.float32 on cpu" in message and "SDModel.from_pipeline" in message


def test_a_run_without_a_token_records_sks(given, tiny_sd, face, tmp_path):
    """No --token and no hypernetwork: the adapter answers to sks, and says so (``lowdim generate`` reads it)."""
    result = personalize(job_of(tiny_sd, face, tmp_path / "me", preview=False, preview_steps=30),
                         progress=False, model=given)
    with safe_open(result.adapter, "pt") as adapter:
        assert adapter.metadata()["token"] == "sks"
