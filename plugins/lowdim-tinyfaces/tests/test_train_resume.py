"""Resuming a TinyFaces training run: a longer budget extends a finished stage; the run keeps its tokenizer."""

from __future__ import annotations

import json
import time

import pytest
import torch

pytest.importorskip("transformers")

from lowdim_tinyfaces.train_config import TrainConfig, build_tokenizer  # noqa: E402
from lowdim_tinyfaces.train_loop import Logger, run_stage  # noqa: E402
from lowdim_tinyfaces.train_model import run_tokenizer  # noqa: E402


def _stage(tmp_path, budget_s: float, resume: bool) -> dict:
    net = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)

    def step_fn(step: int) -> dict[str, float]:
        time.sleep(0.01)  # so the budget, not the machine's speed, decides how many steps there are
        loss = net(torch.ones(1, 2)).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    return run_stage("toy", tmp_path, budget_s, {"net": net}, opt, 0.1, step_fn, TrainConfig(),
                     Logger(tmp_path / "log.txt"), resume)


def test_a_finished_stage_stays_finished_unless_the_budget_grows(tmp_path) -> None:
    first = _stage(tmp_path, 0.3, resume=False)
    assert first["done"] and first["step"] > 0
    again = _stage(tmp_path, 0.3, resume=True)
    assert again["step"] == first["step"]
    longer = _stage(tmp_path, 0.9, resume=True)
    assert longer["done"] and longer["step"] > first["step"]
    assert json.loads((tmp_path / "toy.json").read_text())["step"] == longer["step"]


def test_resume_keeps_the_runs_own_tokenizer(tmp_path) -> None:
    folder = tmp_path / "tokenizer"
    build_tokenizer(folder, 77, "style")  # what the run started with
    cfg = TrainConfig(captions="attributes")  # today's builder would write a larger vocabulary
    kept = run_tokenizer(folder, cfg, resume=True)
    assert "ginger</w>" not in kept.get_vocab()
    rebuilt = run_tokenizer(tmp_path / "fresh", cfg, resume=True)  # nothing to keep: built
    assert "ginger</w>" in rebuilt.get_vocab()


def test_init_from_a_folder_that_is_not_a_model_is_one_line(tmp_path, capsys) -> None:
    from lowdim_tinyfaces.train_model import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "run"), "--budget-minutes", "1", "--init-from", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "not an exported TinyFaces folder" in err[-1] and str(tmp_path) in err[-1]
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.parametrize(("flags", "words"), [
    (["--device", "gpu0"], "'gpu0' is not a torch device"),
    (["--unet-batch", "0"], "--unet-batch must be >= 1"),
    pytest.param(["--device", "cuda"], "no CUDA GPU", marks=pytest.mark.skipif(
        torch.cuda.is_available(), reason="this machine has a GPU")),
])
def test_a_device_or_batch_that_cannot_train_is_one_line_before_anything_is_written(tmp_path, capsys, flags,
                                                                                      words) -> None:
    from lowdim_tinyfaces.train_model import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "run"), "--budget-minutes", "1", *flags])
    assert exit_info.value.code == 2
    assert words in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "run").exists()


def test_the_diffusion_loss_is_set_by_the_steps_generator_alone() -> None:
    """A resumed run, or one on another device, draws the same noise and timesteps for a step: both come
    from the step's CPU generator (drawn there and moved), nothing else."""
    from lowdim_tinyfaces.train_config import build_train_scheduler
    from lowdim_tinyfaces.train_steps import diffusion_loss

    class Echo(torch.nn.Module):  # predicts its input: the loss then depends on the noise and timesteps drawn
        def forward(self, noisy, t, context):
            return type("Out", (), {"sample": noisy + 0 * context.sum()})()

    class Text(torch.nn.Module):
        def forward(self, ids):
            return (ids.float().unsqueeze(-1),)

    latents = torch.randn(3, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    ids, index = torch.zeros(2, 5, dtype=torch.long), torch.tensor([0, 1, 0])
    losses = [diffusion_loss(Echo(), Text(), latents, ids, index, build_train_scheduler(),
                             torch.Generator().manual_seed(7)) for _ in range(2)]
    assert losses[0] == losses[1]
    other = diffusion_loss(Echo(), Text(), latents, ids, index, build_train_scheduler(),
                           torch.Generator().manual_seed(8))
    assert other != losses[0]
