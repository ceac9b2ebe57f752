"""What a hypernetwork file carries of its training beyond its weights: the phrase its targets answer to
(personalize finetunes and draws with it) and the checksum of the bases its predictions live in."""

from __future__ import annotations

import pytest

import lowdim
import lowdim.hyper.storage as storage
from lowdim.hyper import load_hypernet
from lowdim.hyper.storage import read_hypernet
from lowdim_sd.personalize import PersonalizeJob, personalize
from lowdim_sd.personalize_resolve import resolve_run
from lowdim_sd.train import TrainConfig


def job(tiny_sd, face, out, **kwargs) -> PersonalizeJob:
    return PersonalizeJob(model=str(tiny_sd), image=face, out=out, steps=1, preview=False, crop=False, **kwargs)


def test_personalize_finetunes_with_the_phrase_the_hypernetwork_learned(tiny_sd, face, tmp_path, make_hypernet,
                                                                        monkeypatch, capsys):
    import lowdim_sd.personalize as flow

    hypernet = make_hypernet(1, prompt="a close-up of [V] person", token="zwx")
    seen = []
    real = flow.train
    monkeypatch.setattr(flow, "train", lambda *a, **k: seen.append(a[3]) or real(*a, **k))
    result = personalize(job(tiny_sd, face, tmp_path / "me", hypernet=hypernet), progress=False)
    assert (seen[0].prompt, seen[0].token) == ("a close-up of [V] person", "zwx")
    assert lowdim.read_adapter(result.adapter).metadata["token"] == "zwx"  # what `generate` fills [V] with

    from lowdim_cli.personalize_command import show_result
    from lowdim_sd.file_info import describe

    assert describe(result.adapter).use.endswith("-p 'a close-up of [V] person'")  # `show`'s command
    show_result(result, str(tiny_sd), 0.0)
    assert "-p 'a close-up of [V] person at night'" in " ".join(capsys.readouterr().out.split())  # `draw it:`


def test_an_explicit_other_token_is_kept_with_a_warning(tiny_sd, face, tmp_path, make_hypernet):
    hypernet = make_hypernet(1, token="zwx")
    with pytest.warns(UserWarning, match=r"under the token 'zwx'; with PersonalizeJob\(token='sks'\)"):
        run = resolve_run(job(tiny_sd, face, tmp_path / "me", hypernet=hypernet, token="sks"))
    assert run.job.token == "sks"


def test_without_a_recorded_phrase_the_defaults_hold(tiny_sd, face, tmp_path, make_hypernet):
    run = resolve_run(job(tiny_sd, face, tmp_path / "me", hypernet=make_hypernet(1)))
    assert (run.prompt, run.job.token) == (TrainConfig.prompt, "sks")
    plain = resolve_run(job(tiny_sd, face, tmp_path / "plain", no_hyper=True, token="ohwx"))
    assert plain.job.token == "ohwx"


def test_a_hypernetwork_is_refused_where_its_bases_come_out_otherwise(make_hypernet):
    good = make_hypernet(1, adapter_seed=3)
    read = read_hypernet(good)
    space = lowdim.get_space("lidb")
    checksum = storage.bases_checksum(space, read.stored["layers"], 3)
    assert checksum != storage.bases_checksum(space, read.stored["layers"], 4)  # the seed changes every basis
    with_sum = make_hypernet(1, adapter_seed=3, bases_checksum=checksum)
    assert load_hypernet(with_sum).metadata["bases_checksum"] == checksum
    # The same file read where the bases generator gives other bases (another platform or version).
    other = make_hypernet(1, adapter_seed=3, bases_checksum=storage.bases_checksum(space, read.stored["layers"], 4))
    with pytest.raises(lowdim.LowdimError, match=r"lidb bases this machine makes for seed 3 differ from those"):
        load_hypernet(other)


def test_a_space_without_bases_has_no_checksum():
    layers = [lowdim.LayerSpec("a", 8, 4)]
    assert storage.bases_checksum(lowdim.get_space("lora"), layers, 0) is None
    assert storage.bases_checksum(lowdim.get_space("lidb", {"a": 4, "b": 2}), layers, 0) is not None


@pytest.mark.parametrize(("asked", "alpha", "said"), [
    ({"token": "zwx"}, 1.0, "--token 'zwx' changes only the diffusion term's prompt; the hypernetwork records 'sks'"),
    ({"prompt": "a photo of [V]"}, 0.0, "--prompt 'a photo of [V]' changes nothing: --alpha 0 has no diffusion"),
])
def test_train_hypernet_says_the_file_keeps_the_precompute_phrase(weight_folders, tmp_path, asked, alpha, said):
    from lowdim_sd.hypertrain import HyperTrainJob
    from lowdim_sd.hypertrain_io import warn_about_another_phrase

    folder = weight_folders(tmp_path, "w", 1, seed=1, steps=1)
    with pytest.warns(UserWarning, match=said.replace("[", r"\[").replace("]", r"\]")):
        warn_about_another_phrase(HyperTrainJob(weights=folder, alpha=alpha, **asked))


def test_train_hypernet_is_silent_when_the_phrase_is_the_precompute_one(weight_folders, tmp_path, recwarn):
    from lowdim_sd.hypertrain import HyperTrainJob
    from lowdim_sd.hypertrain_io import warn_about_another_phrase

    folder = weight_folders(tmp_path, "w", 1, seed=1, steps=1)
    warn_about_another_phrase(HyperTrainJob(weights=folder, token="sks", prompt=TrainConfig.prompt))
    assert not [w for w in recwarn if "records" in str(w.message)]


def test_an_index_without_a_token_counts_as_sks(weight_folders, tmp_path, recwarn):
    import json

    from lowdim_sd.hypertrain import HyperTrainJob
    from lowdim_sd.hypertrain_io import warn_about_another_phrase

    folder = weight_folders(tmp_path, "w", 1, seed=1, steps=1)
    index = json.loads((folder / "index.json").read_text())
    del index["config"]["token"]  # an index written before tokens were recorded
    (folder / "index.json").write_text(json.dumps(index))
    warn_about_another_phrase(HyperTrainJob(weights=folder, token="sks"))
    assert not [w for w in recwarn if "records" in str(w.message)]


def test_the_ablation_without_the_prediction_says_so_in_its_recipe(tiny_sd, face, tmp_path, make_hypernet):
    from lowdim_sd.personalize import recipe

    run = resolve_run(job(tiny_sd, face, tmp_path / "me", hypernet=make_hypernet(1), no_hyper=True))
    made = recipe(run)
    assert made["hypernet"] is None and made["no_hyper"] is True and made["steps"] == 1
    assert "no_hyper" not in recipe(resolve_run(job(tiny_sd, face, tmp_path / "p", hypernet=make_hypernet(1))))
