"""The lowdim_sd jobs' and GenerateConfig's hints say what the code takes (a str or a Path for a path, any
sequence for a list), so a type checker passes docs/sd.md's own example, and what it holds (a Path, a list), so
``job.out / "adapter.safetensors"`` passes too; the values come out normalised."""

from __future__ import annotations

import os
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

from lowdim.errors import LowdimError
from lowdim_sd.generate import GenerateConfig
from lowdim_sd.personalize import PersonalizeJob
from lowdim_sd.precompute import PrecomputeJob
from lowdim_sd.workflows import TrainJob

PATH = str | os.PathLike[str]

HINTS = [  # (job, field, what it takes, what it holds)
    (PersonalizeJob, "image", PATH, Path), (PersonalizeJob, "out", PATH, Path),
    (PersonalizeJob, "hypernet", PATH | None, Path | None),
    (TrainJob, "images", PATH | Iterable[PATH], list[Path]), (TrainJob, "subjects", PATH | None, Path | None),
    (TrainJob, "initial", PATH | None, Path | None), (TrainJob, "out", PATH, Path),
    (PrecomputeJob, "identities", PATH, Path), (PrecomputeJob, "out", PATH, Path),
    (PrecomputeJob, "init", PATH | None, Path | None),
    (GenerateConfig, "prompts", str | Sequence[str], list[str]),
    (GenerateConfig, "seeds", int | Sequence[int], list[int]),
]


@pytest.mark.parametrize(("owner", "name", "takes", "holds"), HINTS, ids=[f"{o.__name__}.{n}" for o, n, *_ in HINTS])
def test_the_hint_takes_what_the_code_takes_and_holds_what_it_holds(owner, name, takes, holds):
    """A job_fields.Converted[takes, holds]: checkers type __init__'s parameter from its __set__, the attribute
    from its __get__ (tests/test_typing_sd_jobs.py runs mypy on a user's script)."""
    assert typing.get_args(typing.get_type_hints(owner)[name]) == (takes, holds)


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
