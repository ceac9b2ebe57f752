"""The word a run from Python trains under: ``TrainConfig.token`` left unset (None) means the default, sks, or with
``TrainJob(initial=...)`` the word the initial adapter learned (its frozen part answers to it), as ``lowdim train``
resolves a left-out --token; an explicit other word is warned about in the words the caller typed; an empty word or
one with spaces is one line, as on the command line."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import lowdim
import lowdim_sd.train as engine
from lowdim.errors import LowdimError
from lowdim_sd.train import TrainConfig
from lowdim_sd.workflows import TrainJob, run_train

TI = {"space": "ti", "space_options": {"vectors": 2, "init_word": "face"}}


@pytest.fixture(autouse=True)
def _threads(one_thread):
    """One torch thread, as the other SD tests: tiny models run no faster on more."""


@pytest.fixture(scope="module")
def ohwx(tiny_sd, tmp_path_factory):
    """An adapter that learned its subject under 'ohwx'."""
    from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

    folder = tmp_path_factory.mktemp("ohwx")
    face = save_images(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1, folder, "face")[0]
    return run_train(TrainJob(model=str(tiny_sd), images=[face], out=folder / "run",
                              config=TrainConfig(steps=1, token="ohwx")), progress=False).outputs[0]


def prompts_trained(monkeypatch) -> list[str]:
    seen: list[str] = []
    real = engine.fill_prompt

    def fill(prompt, token):
        seen.append(real(prompt, token))
        return seen[-1]

    monkeypatch.setattr(engine, "fill_prompt", fill)
    return seen


def token_of(path) -> str:
    return lowdim.read_adapter(path).metadata["token"]


def test_unset_token_trains_under_the_initial_adapters_word_and_the_config_is_not_changed(
        model, tiny_sd, face, tmp_path, ohwx, monkeypatch):
    config = TrainConfig(steps=1)
    assert config.token is None
    seen = prompts_trained(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about: the word is the initial adapter's own
        result = run_train(TrainJob(model=str(tiny_sd), images=[face], out=tmp_path, initial=ohwx, config=config),
                           progress=False, model=model)
    assert token_of(result.outputs[0]) == "ohwx" and seen == ["a ohwx face"]
    assert config.token is None  # the caller's config may serve another job


@pytest.mark.parametrize("options", [{}, TI], ids=["lidb", "ti"])
def test_unset_token_is_sks_without_an_initial_adapter(model, tiny_sd, face, tmp_path, options):
    job = TrainJob(model=str(tiny_sd), images=[face], out=tmp_path, config=TrainConfig(steps=1, token=None), **options)
    result = run_train(job, progress=False, model=model)
    assert token_of(result.outputs[0]) == "sks"


def test_an_explicit_other_word_is_warned_about_in_the_api_s_words(model, tiny_sd, face, tmp_path, ohwx):
    with pytest.warns(UserWarning) as caught:
        result = run_train(TrainJob(model=str(tiny_sd), images=[face], out=tmp_path, initial=ohwx,
                                    config=TrainConfig(steps=1, token="sks")), progress=False, model=model)
    message = next(str(w.message) for w in caught if "ohwx" in str(w.message))
    assert "TrainConfig(token='sks')" in message and "--token" not in message, message
    assert token_of(result.outputs[0]) == "sks"


@pytest.mark.parametrize("token", ["", "  ", "two words", " sks"])
def test_an_empty_token_or_one_with_spaces_is_one_line_and_writes_nothing(tiny_sd, face, tmp_path, token):
    with pytest.raises(LowdimError) as caught:
        run_train(TrainJob(model=str(tiny_sd), images=[face], out=tmp_path / "run",
                           config=TrainConfig(steps=1, token=token)), progress=False)
    assert "token" in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "run" / "adapter.safetensors").exists()


@pytest.mark.parametrize("cls", ["TrainConfig", "TrainResult", "Subject"])
def test_help_teaches_each_field(cls):
    import dataclasses

    import lowdim_sd.train as module

    target = getattr(module, cls)
    doc = target.__doc__ or ""
    assert not doc.startswith(f"{cls}("), "the docstring is dataclass's generated signature"
    missing = [f.name for f in dataclasses.fields(target) if f"``{f.name}``" not in doc]
    assert missing == [], f"{cls}'s docstring does not say what these fields mean: {missing}"


def test_personalize_without_a_hypernetwork_or_a_token_still_records_sks(tiny_sd, face, tmp_path):
    from lowdim_sd.personalize import PersonalizeJob, personalize

    result = personalize(PersonalizeJob(model=str(tiny_sd), image=face, out=tmp_path, steps=1, preview=False,
                                        crop=False), progress=False)
    assert token_of(result.adapter) == "sks"  # what it trained under, which generate's [V] then calls


def test_train_alone_with_an_unset_token_trains_under_sks(model, faces, monkeypatch):
    from lowdim_sd.modes import adapter_trainable, resolve_layers
    from lowdim_sd.train import Subject, train

    seen = prompts_trained(monkeypatch)
    trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None, model.name))
    try:
        train(model, [Subject(faces)], trainable, TrainConfig(steps=1), progress=False)
    finally:
        lowdim.Adapters(model.modules).delete(trainable.name)
    assert seen == ["a sks face"] and trainable.metadata["token"] == "sks"


@pytest.mark.parametrize(("token", "said"), [("", "--token is empty"), ("two words", "--token must be one word"),
                                             ("sk\x1b[31ms", r"got 'sk\x1b[31ms'"), ("s\x00ks", r"got 's\x00ks'"),
                                             pytest.param("\x1b" + "s" * 4999, "(cut: 5000 characters)", id="long")])
def test_the_command_still_refuses_a_bad_token_in_its_own_words(tiny_sd, face, tmp_path, capsys, token, said):
    from lowdim_cli.main import main

    code = main(["train", "-m", str(tiny_sd), "-i", str(face), "--steps", "1", "-o", str(tmp_path / "o"),
                 "--token", token])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and said in err[0] and len(err[0]) < 300, err
    assert not (tmp_path / "o" / "adapter.safetensors").exists()


def test_train_alone_leaves_the_callers_config_unset_for_the_next_job(model, faces, tiny_sd, face, tmp_path):
    """One TrainConfig serving several jobs: the rate and word the engine filled in for the first are its own,
    so a second job's own rate is not taken for a second rate, nor its word pinned to sks."""
    from lowdim_sd.modes import adapter_trainable, resolve_layers
    from lowdim_sd.train import Subject, train

    config = TrainConfig(steps=1)
    trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None, model.name))
    try:
        train(model, [Subject(faces)], trainable, config, progress=False)
    finally:
        lowdim.Adapters(model.modules).delete(trainable.name)
    assert config == TrainConfig(steps=1)
    result = run_train(TrainJob(model=str(tiny_sd), images=[face], out=tmp_path, learning_rate=5e-5, config=config),
                       progress=False, model=model)
    assert len(result.losses) == 1 and config == TrainConfig(steps=1)


@given(rate=st.one_of(st.none(), st.floats(1e-6, 1.0)), token=st.one_of(st.none(), st.sampled_from(["ohwx", "zwx"])),
       job_sets_rate=st.booleans(), default=st.floats(1e-6, 1.0))
def test_the_rate_and_word_a_job_runs_at_are_a_copy(rate, token, job_sets_rate, default):
    from lowdim_sd.train_settings import DEFAULT_TOKEN, job_rate

    config = TrainConfig(steps=1, learning_rate=rate, token=token)
    own = (rate if rate is not None else default / 2) if job_sets_rate else None  # TrainJob(learning_rate=...)
    ran = job_rate(config, own, "TrainJob", default)
    assert config == TrainConfig(steps=1, learning_rate=rate, token=token)  # the caller's, as they built it
    assert ran.learning_rate == (own if own is not None else rate if rate is not None else default)
    assert ran.token == (token or DEFAULT_TOKEN)
