"""Training from Python (a notebook, a script), not the CLI: a model handed to ``run_train`` comes back as it
was given, a ``TrainConfig``'s rate is honoured and never changed, an outer ``torch.no_grad()`` does not stop
training, and the jobs take str paths."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lowdim
import lowdim_sd.train as engine
from lowdim.errors import LowdimError
from lowdim_sd import runs
from lowdim_sd.loading import load_sd
from lowdim_sd.personalize import PersonalizeJob, personalize
from lowdim_sd.train import TrainConfig
from lowdim_sd.workflows import TrainJob, run_train

TI = {"space": "ti", "space_options": {"vectors": 2, "init_word": "face"}}


@pytest.fixture(autouse=True)
def _threads(one_thread):
    """One torch thread, as the other SD tests: tiny models run no faster on more."""


def snapshot(model) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in model.modules.state_dict().items()}


def assert_as_given(model, before: dict[str, torch.Tensor], vocabulary: int, exact: bool = True) -> None:
    """No adapter left, the same tokens, and every base weight back (bit for bit, or to merge/unmerge's rounding)."""
    assert lowdim.Adapters(model.modules).names() == []
    assert len(model.pipe.tokenizer) == vocabulary
    after = model.modules.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(after[key], value) if exact else torch.allclose(after[key], value, atol=1e-6), key
    assert not any(p.requires_grad for p in model.modules.parameters())


def train_job(tiny_sd, face, out, steps: int = 1, **kwargs) -> TrainJob:
    return TrainJob(model=str(tiny_sd), images=[face], out=out, config=kwargs.pop("config", TrainConfig(steps=steps)),
                    **kwargs)


@pytest.mark.parametrize("options", [{}, TI], ids=["lidb", "ti"])
def test_a_given_model_comes_back_as_given_and_trains_again(model, tiny_sd, face, tmp_path, options):
    before, vocabulary = snapshot(model), len(model.pipe.tokenizer)
    for attempt in range(2):  # the second run on the same model was refused: 'subject' already exists
        result = run_train(train_job(tiny_sd, face, tmp_path / str(attempt), **options), progress=False, model=model)
        assert result.outputs[0].is_file()  # the adapter lives in its file, not on the model
        assert_as_given(model, before, vocabulary)


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError])
def test_a_given_model_comes_back_after_a_stopped_relaxed_run_which_then_resumes_on_it(
        model, tiny_sd, face, tmp_path, monkeypatch, stop):
    initial = run_train(train_job(tiny_sd, face, tmp_path / "init"), progress=False).outputs[0]
    before, vocabulary = snapshot(model), len(model.pipe.tokenizer)
    real = engine._one_step

    def stops_at_step_one(*args, **kwargs):
        if args[5] == 1:
            raise stop("stopped")
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "_one_step", stops_at_step_one)
    job = train_job(tiny_sd, face, tmp_path / "relaxed", steps=3, initial=initial)
    with pytest.raises(runs.Interrupted if stop is KeyboardInterrupt else RuntimeError):
        run_train(job, progress=False, model=model)
    assert_as_given(model, before, vocabulary, exact=False)  # the initial adapter was merged, then unmerged
    monkeypatch.setattr(engine, "_one_step", real)
    if stop is KeyboardInterrupt:  # what the stop's message recommends, on the same model
        job = dataclasses.replace(job, resume=True)
    else:
        job = dataclasses.replace(job, overwrite=True)
    assert len(run_train(job, progress=False, model=model).losses) >= 2
    assert_as_given(model, before, vocabulary, exact=False)


def test_full_dreambooth_refuses_a_given_model_before_touching_it(model, tiny_sd, face, tmp_path):
    before = snapshot(model)
    with pytest.raises(LowdimError, match="trains the model's own weights") as error:
        run_train(train_job(tiny_sd, face, tmp_path / "full", full=True), progress=False, model=model)
    assert "\n" not in str(error.value)
    assert_as_given(model, before, len(model.pipe.tokenizer))


def rates_used(monkeypatch) -> list[float]:
    used = []
    real = engine.make_optimizer
    monkeypatch.setattr(engine, "make_optimizer", lambda params, config: used.append(config.learning_rate)
                        or real(params, config))
    return used


def test_the_config_s_learning_rate_is_used_and_the_caller_s_config_never_changes(model, tiny_sd, face, tmp_path,
                                                                                   monkeypatch):
    used = rates_used(monkeypatch)
    given, unset = TrainConfig(steps=1, learning_rate=0.5), TrainConfig(steps=1)
    run_train(train_job(tiny_sd, face, tmp_path / "a", config=given), progress=False, model=model)
    run_train(train_job(tiny_sd, face, tmp_path / "b", config=unset), progress=False, model=model)
    run_train(train_job(tiny_sd, face, tmp_path / "c", config=given, learning_rate=0.5), progress=False, model=model)
    assert used == [0.5, 2e-3, 0.5]  # 2e-3: LiDB's default, when neither says
    assert (given.learning_rate, unset.learning_rate) == (0.5, None)


def test_two_different_learning_rates_are_one_line(tiny_sd, face, tmp_path):
    job = train_job(tiny_sd, face, tmp_path / "x", config=TrainConfig(steps=1, learning_rate=0.5), learning_rate=0.1)
    with pytest.raises(LowdimError, match=r"learning rate.*0\.1.*0\.5") as error:
        run_train(job, progress=False)
    assert "\n" not in str(error.value) and not (tmp_path / "x").exists()


def personalize_job(tiny_sd, face, out, **kwargs) -> PersonalizeJob:
    return PersonalizeJob(model=str(tiny_sd), image=face, out=out, steps=kwargs.pop("steps", 1), preview=False,
                          crop=False, **kwargs)


def test_training_runs_under_an_outer_no_grad(model, tiny_sd, face, tmp_path):
    before, vocabulary = snapshot(model), len(model.pipe.tokenizer)
    with torch.no_grad():
        trained = run_train(train_job(tiny_sd, face, tmp_path / "t", steps=2), progress=False, model=model)
        personalized = personalize(personalize_job(tiny_sd, face, tmp_path / "p", steps=2), progress=False)
        assert not torch.is_grad_enabled()  # the caller's mode is theirs again
    assert trained.losses and personalized.losses and personalized.adapter.is_file()
    assert_as_given(model, before, vocabulary)


def test_inference_mode_is_refused_in_one_line_before_anything_loads(tiny_sd, face, tmp_path, monkeypatch):
    monkeypatch.setattr("lowdim_sd.workflows.load_sd", lambda *a, **k: pytest.fail("loaded a model"))
    monkeypatch.setattr("lowdim_sd.personalize.load_sd", lambda *a, **k: pytest.fail("loaded a model"))
    with torch.inference_mode():
        for call in (lambda: run_train(train_job(tiny_sd, face, tmp_path / "t"), progress=False),
                     lambda: personalize(personalize_job(tiny_sd, face, tmp_path / "p"), progress=False)):
            with pytest.raises(LowdimError, match="inference_mode") as error:
                call()
            assert "\n" not in str(error.value)
    assert not (tmp_path / "t").exists() and not (tmp_path / "p").exists()


def test_jobs_take_str_paths(tiny_sd, face, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trained = run_train(TrainJob(model=str(tiny_sd), images=[str(face)], out="mine", config=TrainConfig(steps=1)),
                        progress=False)
    assert trained.outputs[0].resolve() == tmp_path / "mine" / "adapter.safetensors"
    single = TrainJob(model="m", images=str(face), subjects=str(tmp_path), initial=str(face), out="o")
    assert single.images == [face] and (single.subjects, single.initial, single.out) == (tmp_path, face, Path("o"))
    result = personalize(personalize_job(tiny_sd, str(face), "me"), progress=False)
    assert (tmp_path / "me" / "adapter.safetensors").is_file() and result.adapter.name == "adapter.safetensors"
    assert PersonalizeJob(model="m", image=str(face), export="kohya").export == ["kohya"]  # a format, not letters


@pytest.mark.parametrize("picture", [Image.new("RGB", (8, 8)), np.zeros((8, 8, 3)), torch.zeros(3, 8, 8)],
                         ids=["pil", "numpy", "tensor"])
def test_a_decoded_picture_as_image_is_one_line_asking_for_a_file(picture):
    with pytest.raises(LowdimError, match="takes the path to a photo file") as error:
        PersonalizeJob(model="tinyfaces", image=picture)
    assert "\n" not in str(error.value)


def test_other_path_fields_of_a_wrong_type_are_one_line():
    with pytest.raises(LowdimError, match="out= takes a path") as error:
        TrainJob(model="m", out=3)
    with pytest.raises(LowdimError, match="hypernet= takes a path"):
        PersonalizeJob(model="m", image="face.png", hypernet=3)
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_personalize_puts_the_callers_random_stream_back(tmp_path, one_thread):
    # TinyFaces' own run: its describer and hypernetwork are what draw from torch's global generator
    photo = Path(__file__).parents[2] / "examples" / "face.png"
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    personalize(PersonalizeJob(model="tinyfaces", image=photo, out=tmp_path / "me", steps=1, preview=False),
                progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_precompute_uses_a_rate_set_in_its_config_and_refuses_two():
    from lowdim_sd.precompute import PrecomputeJob, training_config

    def job(**options) -> PrecomputeJob:
        return PrecomputeJob(model="tinyfaces", identities=Path("ids"), **options)

    assert training_config(job(config=TrainConfig(learning_rate=0.5))).learning_rate == 0.5
    assert training_config(job(learning_rate=0.1)).learning_rate == 0.1
    assert training_config(job()).learning_rate == 2e-3  # lidb's own rate
    with pytest.raises(LowdimError, match="two learning rates"):
        training_config(job(learning_rate=0.1, config=TrainConfig(learning_rate=0.5)))


def test_a_given_fp16_model_on_a_cpu_is_refused_as_the_command_refuses_it(tiny_sd, face, tmp_path):
    half = load_sd(str(tiny_sd), "cpu", "fp16")
    with pytest.raises(LowdimError, match=r"run_train\(model=...\): the model is torch.float16 on cpu: dtype='fp16' "
                                          r"on a CPU"):
        run_train(train_job(tiny_sd, face, tmp_path / "t"), progress=False, model=half)
    assert lowdim.Adapters(half.modules).names() == []


def test_a_given_model_in_another_dtype_than_the_job_asks_is_refused(model, tiny_sd, face, tmp_path):
    """run_train(model=) checks the job against the model as personalize(model=) does (one shared check)."""
    with pytest.raises(LowdimError) as error:
        run_train(train_job(tiny_sd, face, tmp_path / "bf", dtype="bf16"), progress=False, model=model)
    assert str(error.value).startswith("run_train(model=...): TrainJob.dtype is 'bf16' and model= is torch.float32")
    assert not (tmp_path / "bf").exists()
