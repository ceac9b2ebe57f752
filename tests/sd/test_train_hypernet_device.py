"""`lowdim train-hypernet --device` takes the values its siblings take (auto, cpu, cuda, cuda:N, mps) and hands
them to accelerate: cpu is accelerate's cpu=True, cuda:N makes GPU N the one accelerate's "cuda" means, and
what accelerate cannot do (one GPU per process under a launcher) is one line. The old --cpu still works."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import lowdim_sd.hypertrain
from lowdim_cli.main import main


@pytest.fixture
def jobs(monkeypatch, tmp_path):
    """Each job the command would run, kept instead of trained."""
    seen = []

    def run(job, **kwargs):
        seen.append(job)
        return SimpleNamespace(main_process=False)

    monkeypatch.setattr(lowdim_sd.hypertrain, "train_hypernet", run)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    return seen


@pytest.fixture
def two_gpus(monkeypatch):
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    return chosen


def hypernet_cli(tmp_path, *args: str) -> int:
    return main(["train-hypernet", "-w", str(tmp_path / "weights"), "-o", str(tmp_path / "h"), *args])


@pytest.mark.parametrize(("args", "cpu"), [([], False), (["--device", "auto"], False), (["--device", "cpu"], True),
                                           (["--cpu"], True), (["--cpu", "--device", "cpu"], True)])
def test_device_cpu_and_the_old_cpu_flag_both_keep_accelerate_on_the_cpu(jobs, tmp_path, args, cpu):
    assert hypernet_cli(tmp_path, *args) == 0
    assert jobs[-1].cpu is cpu


def test_a_numbered_gpu_is_the_one_accelerate_trains_on(jobs, tmp_path, two_gpus):
    assert hypernet_cli(tmp_path, "--device", "cuda:1") == 0
    assert jobs[-1].cpu is False and two_gpus == [1]
    assert hypernet_cli(tmp_path, "--device", "cuda") == 0
    assert two_gpus == [1]  # plain cuda: accelerate's own choice, nothing set


@pytest.mark.parametrize(("args", "words"), [
    (["--device", "gpu"], "did you mean cuda?"),
    (["--device", "cuda:2"], "device 'cuda:2' does not exist"),
    (["--cpu", "--device", "cuda"], "--cpu"),
])
def test_a_device_accelerate_cannot_use_is_one_line(jobs, tmp_path, two_gpus, capsys, args, words):
    assert hypernet_cli(tmp_path, *args) == 1
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and words in said[0] and not jobs, said


def test_a_numbered_gpu_under_a_launcher_is_refused_naming_the_launchers_choice(jobs, tmp_path, two_gpus,
                                                                               monkeypatch, capsys):
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert hypernet_cli(tmp_path, "--device", "cuda:1") == 1
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and "accelerate launch" in said[0] and "--gpu_ids" in said[0] and not two_gpus


def test_help_offers_device_and_hides_the_old_flag(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["train-hypernet", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--device" in text and "cuda:1" in text and "--cpu " not in text
