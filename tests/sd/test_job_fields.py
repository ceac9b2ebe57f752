"""Every job's path field takes a str and holds a Path, when made and when set later; a value of another type is
one line naming the job and the field; a required field is still required (lowdim_sd.job_fields)."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from pathlib import Path

import pytest

from lowdim.errors import LowdimError
from lowdim_sd.eval.job import EvalJob
from lowdim_sd.generate import GenerateConfig
from lowdim_sd.hypertrain import HyperTrainJob
from lowdim_sd.personalize import PersonalizeJob
from lowdim_sd.precompute import PrecomputeJob
from lowdim_sd.ui.studio import StudioConfig
from lowdim_sd.workflows import TrainJob


def test_hypernetwork_training_takes_str_paths_and_holds_paths():
    job = HyperTrainJob(weights="weights", out="hyper", extra_images="extra", features="f.safetensors",
                        image_root="people", key_pairs="pairs")
    assert (job.out, job.extra_images, job.features, job.image_root, job.key_pairs) == (
        Path("hyper"), [Path("extra")], Path("f.safetensors"), Path("people"), Path("pairs"))
    assert HyperTrainJob(weights="w").extra_images == [] and HyperTrainJob(weights="w").features is None


def test_eval_and_studio_take_str_paths_and_hold_paths():
    job = EvalJob("images", metrics="tinyfaces-identity, tinyfaces-style", references="face.png")
    assert (job.folder, job.metrics, job.references) == (
        Path("images"), ("tinyfaces-identity", "tinyfaces-style"), (Path("face.png"),))
    assert EvalJob("images", metrics=["dino"]).metrics == ("dino",)
    assert StudioConfig(out="ui").out == Path("ui")


def test_a_path_set_after_the_job_is_made_is_a_path_too():
    job = TrainJob(model="tinyfaces")
    job.out, job.images, job.initial = "elsewhere", "me.jpg", "me.safetensors"
    assert (job.out, job.images, job.initial) == (Path("elsewhere"), [Path("me.jpg")], Path("me.safetensors"))


@pytest.mark.parametrize(("make", "line"), [
    (lambda: HyperTrainJob(weights="w", out=3), "HyperTrainJob: out= takes a path (a str or Path), got a int"),
    (lambda: HyperTrainJob(weights="w", features=b"f"), "HyperTrainJob: features= takes a path (a str or Path), "
                                                        "got a bytes"),
    (lambda: StudioConfig(out=None), "StudioConfig: out= takes a path (a str or Path), got a NoneType"),
    (lambda: EvalJob("images", metrics=5), "EvalJob: metrics= takes metric names (comma text or a tuple of "
                                           "names), got a int"),
    (lambda: PersonalizeJob(model="tinyfaces", image="me.jpg", hypernet=1.5), "PersonalizeJob: hypernet= takes a "
                                                                              "path (a str or Path), got a float"),
])
def test_a_value_of_another_type_is_one_line_naming_the_job_and_field(make, line):
    with pytest.raises(LowdimError) as refused:
        make()
    assert str(refused.value) == line


@pytest.mark.parametrize("make", [lambda: PersonalizeJob(model="tinyfaces"), lambda: PrecomputeJob(model="tinyfaces"),
                                  lambda: EvalJob(), lambda: GenerateConfig()])
def test_a_required_field_is_still_required(make):
    with pytest.raises(TypeError, match="missing 1 required positional argument"):
        make()


def test_a_frozen_job_stays_frozen_and_copies_as_a_dataclass():
    job = PersonalizeJob(model="tinyfaces", image="me.jpg", out="me", export="diffusers")
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.out = Path("other")
    moved = dataclasses.replace(job, out="moved")
    assert (moved.out, moved.image, moved.export) == (Path("moved"), Path("me.jpg"), ["diffusers"])
    assert pickle.loads(pickle.dumps(job)) == job == copy.deepcopy(job)
    assert {f.name: f.default for f in dataclasses.fields(job)}["out"] == Path("personalized")
    assert dataclasses.asdict(job)["out"] == Path("me")


def test_help_shows_what_a_job_field_takes_not_the_descriptor_type():
    """help(TrainJob) and inspect.signature are where a user reads what to pass."""
    import inspect

    from lowdim_sd.personalize import PersonalizeJob
    from lowdim_sd.workflows import TrainJob

    shown = inspect.signature(TrainJob).parameters
    assert shown["out"].annotation == "str | os.PathLike[str]"
    assert shown["subjects"].annotation == "str | os.PathLike[str] | None"
    assert "Field" not in str(inspect.signature(PersonalizeJob))


@pytest.mark.parametrize("seeds", [True, False, [0, True]])
def test_a_bool_given_as_seeds_is_refused_not_drawn_as_seed_one(seeds):
    """True is an int to Python: taken as a seed it would draw seed 1 where the user meant something else."""
    from lowdim_sd.generate import check_config

    with pytest.raises(LowdimError) as refused:
        check_config(GenerateConfig(prompts=["x"], seeds=seeds))
    assert str(refused.value) == f"seeds must be a list of integers, e.g. seeds=[0, 1]; got {seeds!r}"


def test_one_seed_given_bare_is_that_seed():
    assert GenerateConfig(prompts=["x"], seeds=3).seeds == [3]
