"""The lowdim_sd jobs' and GenerateConfig's hints say what the code takes (a str or a Path for a path, any
sequence for a list), so a type checker passes docs/sd.md's own example; the values come out normalised."""

from __future__ import annotations

import os
import typing
from collections.abc import Sequence
from pathlib import Path

import pytest

from lowdim.errors import LowdimError
from lowdim_sd.generate import GenerateConfig
from lowdim_sd.personalize import PersonalizeJob
from lowdim_sd.precompute import PrecomputeJob
from lowdim_sd.workflows import TrainJob

PATH = str | os.PathLike[str]

HINTS = [
    (PersonalizeJob, "image", PATH), (PersonalizeJob, "out", PATH), (PersonalizeJob, "hypernet", PATH | None),
    (TrainJob, "images", Sequence[PATH]), (TrainJob, "subjects", PATH | None), (TrainJob, "initial", PATH | None),
    (TrainJob, "out", PATH),
    (PrecomputeJob, "identities", PATH), (PrecomputeJob, "out", PATH), (PrecomputeJob, "init", PATH | None),
    (GenerateConfig, "prompts", str | Sequence[str]), (GenerateConfig, "seeds", int | Sequence[int]),
]


@pytest.mark.parametrize(("owner", "name", "hint"), HINTS, ids=[f"{o.__name__}.{n}" for o, n, _ in HINTS])
def test_the_hint_takes_what_the_code_takes(owner, name, hint):
    assert typing.get_type_hints(owner)[name] == hint


def test_generate_config_reads_any_sequence_as_a_list():
    config = GenerateConfig(prompts=("a face", "a [V] face"), seeds=range(2))
    assert (config.prompts, config.seeds) == (["a face", "a [V] face"], [0, 1])
    assert (GenerateConfig(prompts="a face", seeds=3).prompts, GenerateConfig(prompts="a", seeds=3).seeds) == (
        ["a face"], [3])


def test_train_job_reads_a_tuple_of_str_as_paths(tmp_path):
    job = TrainJob(model="tinyfaces", images=("a.png", tmp_path), subjects=str(tmp_path), out="o")
    assert (job.images, job.subjects, job.out) == ([Path("a.png"), tmp_path], tmp_path, Path("o"))


def test_precompute_job_reads_str_paths_as_paths(tmp_path):
    job = PrecomputeJob(model="tinyfaces", identities=str(tmp_path), out="w", init="mean.safetensors")
    assert (job.identities, job.out, job.init) == (tmp_path, Path("w"), Path("mean.safetensors"))


def test_a_precompute_path_of_another_type_is_one_line():
    with pytest.raises(LowdimError) as refused:
        PrecomputeJob(model="tinyfaces", identities=3)
    assert str(refused.value) == "PrecomputeJob: identities= takes a path (a str or Path), got a int"
