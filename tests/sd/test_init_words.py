"""What --init is told when it cannot work: a Textual Inversion file is no adapter to finetune, another space is
named by name, and a run that diverges from a huge start says so instead of blaming the learning rate."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open
from safetensors_edit import rewrite

import lowdim
from lowdim.errors import LowdimError
from lowdim.option_words import command_line
from lowdim_sd.divergence import TrainingDiverged, stop_if_diverged
from lowdim_sd.precompute import PrecomputeJob, precompute
from lowdim_sd.precompute_start import check_start_early
from lowdim_sd.train import TrainConfig
from lowdim_sd.workflows import TrainJob, run_train


def filled(source, target, value: float):
    """A copy of an adapter file with every value set to ``value``: finite, so it loads, and huge."""
    shutil.copy(source, target)
    with safe_open(str(target), framework="pt") as handle:
        tensors = {key: torch.full_like(handle.get_tensor(key), value) for key in handle.keys()}  # noqa: SIM118
    return rewrite(target, tensors)


def test_train_init_with_an_embedding_says_it_takes_a_weight_adapter(tiny_sd, lidb_and_ti, face, tmp_path):
    ti = lidb_and_ti[1]
    job = TrainJob(model=str(tiny_sd), images=[face], initial=ti, out=tmp_path / "run", config=TrainConfig(steps=1))
    with pytest.raises(LowdimError) as refused:
        run_train(job, progress=False)
    assert str(refused.value).startswith(f"{ti}: a Textual Inversion embedding") and "weight adapter" in str(
        refused.value)


def test_precompute_init_of_another_space_names_both_spaces(lidb_and_ti):
    with pytest.raises(LowdimError) as refused:
        check_start_early(lidb_and_ti[1], lowdim.get_space("lidb"), 0)
    said = "its space is 'ti', this precompute's is 'lidb'"
    assert str(refused.value) == f"PrecomputeJob(init={str(lidb_and_ti[1])!r}): {said}"  # from Python: the field
    with pytest.raises(LowdimError) as refused, command_line():  # `lowdim precompute --init`: the flag
        check_start_early(lidb_and_ti[1], lowdim.get_space("lidb"), 0)
    assert str(refused.value) == f"--init {lidb_and_ti[1]}: {said}"


def test_precompute_init_of_other_space_options_names_the_option(untrained_adapter):
    with pytest.raises(LowdimError) as refused:
        check_start_early(untrained_adapter, lowdim.get_space("lidb", a=4), 0)
    message = str(refused.value)
    assert message.startswith(f"PrecomputeJob(init={str(untrained_adapter)!r}): its space differs from this "
                              f"precompute's (lidb: a=")
    assert "a=100 against 4" in message and "{" not in message


def test_a_run_without_a_checkpoint_folder_does_not_blame_a_missing_out():
    trainable = SimpleNamespace(parameters=[torch.nn.Parameter(torch.zeros(2))])
    with pytest.raises(TrainingDiverged) as stopped:
        stop_if_diverged(float("nan"), 0, trainable, None, None)
    assert "no checkpoint was written;" in str(stopped.value) and "--out" not in str(stopped.value)


def test_a_divergence_from_a_huge_start_names_its_largest_value():
    from lowdim_sd.divergence import note_start

    parameter = torch.nn.Parameter(torch.zeros(2))
    note_start([parameter], [torch.tensor([0.5, -3e30])])
    with pytest.raises(TrainingDiverged, match=r"the initial adapter holds values up to 3e\+30, where"):
        stop_if_diverged(float("nan"), 0, SimpleNamespace(parameters=[parameter]), None, None)


def test_train_init_from_a_huge_adapter_names_it(tiny_sd, untrained_adapter, face, tmp_path):
    huge = filled(untrained_adapter, tmp_path / "huge.safetensors", 1e30)
    job = TrainJob(model=str(tiny_sd), images=[face], initial=huge, out=tmp_path / "run", config=TrainConfig(steps=2))
    with pytest.raises(TrainingDiverged, match=r"holds values up to [0-9.]+e\+\d\d"):
        run_train(job, progress=False)


def test_precompute_init_from_a_huge_adapter_names_it_and_not_a_missing_out(tiny_sd, people, untrained_adapter,
                                                                            tmp_path):
    huge = filled(untrained_adapter, tmp_path / "huge.safetensors", 1e30)
    job = PrecomputeJob(model=str(tiny_sd), identities=people, out=tmp_path / "w", init=huge, crop=False,
                        config=TrainConfig(steps=2))
    with pytest.raises(TrainingDiverged) as stopped:
        precompute(job, progress=False)
    assert "holds values up to" in str(stopped.value) and "no --out" not in str(stopped.value)
