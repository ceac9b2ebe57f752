"""Resuming a TinyFaces training run: a longer budget extends a finished stage; a stage planned in steps
ends the same however often it was paused; the run keeps its tokenizer."""

from __future__ import annotations

import json
import time

import pytest
import torch

pytest.importorskip("transformers")

from lowdim_tinyfaces.train_config import TrainConfig, build_tokenizer  # noqa: E402
from lowdim_tinyfaces.train_loop import Logger, StagePlan, run_stage  # noqa: E402
from lowdim_tinyfaces.train_model import run_tokenizer  # noqa: E402


def _stage(tmp_path, plan: StagePlan | float, resume: bool, rates: list[float] | None = None,
           nets: list[torch.nn.Module] | None = None) -> dict:
    torch.manual_seed(0)
    net = torch.nn.Linear(2, 1)
    if nets is not None:
        nets.append(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)

    def step_fn(step: int) -> dict[str, float]:
        time.sleep(0.01)  # so the budget, not the machine's speed, decides how many steps there are
        loss = (net(torch.full((1, 2), float(step % 7))) - 1).pow(2).sum()  # each step its own batch
        opt.zero_grad()
        loss.backward()
        opt.step()
        if rates is not None:
            rates.append(opt.param_groups[0]["lr"])
        return {"loss": loss.item()}

    plan = plan if isinstance(plan, StagePlan) else StagePlan(plan)
    return run_stage("toy", tmp_path, plan, {"net": net}, opt, 0.1, step_fn, TrainConfig(),
                     Logger(tmp_path / "log.txt"), resume)


def test_a_finished_stage_stays_finished_unless_the_budget_grows(tmp_path) -> None:
    first = _stage(tmp_path, 0.3, resume=False)
    assert first["done"] and first["step"] > 0
    again = _stage(tmp_path, 0.3, resume=True)
    assert again["step"] == first["step"]
    longer = _stage(tmp_path, 0.9, resume=True)
    assert longer["done"] and longer["step"] > first["step"]
    assert json.loads((tmp_path / "toy.json").read_text())["step"] == longer["step"]


def test_a_stage_planned_in_steps_ends_the_same_however_often_a_deadline_paused_it(tmp_path) -> None:
    """--unet-steps: the same command makes the same model; a --deadline only pauses it for --resume."""
    steps = 120
    nets, whole_rates = [], []
    whole = _stage(tmp_path / "whole", StagePlan(0.0, steps=steps), False, whole_rates, nets)
    assert whole["done"] and whole["step"] == steps == len(whole_rates)
    assert whole_rates[-1] < whole_rates[steps // 2]  # annealed over the steps, though the time budget is 0
    split_rates, folder = [], tmp_path / "split"
    first = _stage(folder, StagePlan(0.0, deadline=time.time() + 0.3, steps=steps), False, split_rates)
    assert not first["done"] and 0 < first["step"] < steps
    assert "paused at the deadline" in (folder / "log.txt").read_text()
    last = _stage(folder, StagePlan(0.0, steps=steps), True, split_rates, nets)
    assert last["done"] and last["step"] == steps
    assert split_rates == whole_rates
    whole_net, split_net = nets
    assert all(torch.equal(a, b) for a, b in zip(whole_net.state_dict().values(), split_net.state_dict().values(),
                                                 strict=True))
    assert _stage(folder, StagePlan(0.0, steps=steps), True)["step"] == steps  # finished: nothing more to do


def test_a_run_planned_in_steps_keeps_its_thread_count() -> None:
    """1 and 2 threads sum gradients in another order: a reproducible run must not switch by load."""
    from lowdim_tinyfaces.train_loop import ThreadTuner

    tuned, fixed = ThreadTuner(2), ThreadTuner(2, tune=False)
    assert 1 in {tuned.threads_for(step) for step in range(10)}  # probes one thread after a start
    for step in range(600):
        assert fixed.threads_for(step) == 2
        fixed.record(step, 2, 100.0 if step % 7 else 0.01)  # even wildly varying step times change nothing
    assert fixed.threads_for(601) == 2


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
    (["--device", "gpu0"], "unknown device 'gpu0'"),
    (["--device", "meta"], "device 'meta' cannot run lowdim"),
    (["--unet-batch", "0"], "--unet-batch must be >= 1"),
    (["--unet-steps", "-5"], "--unet-steps must be >= 1"),
    pytest.param(["--device", "cuda"], "CUDA is not available", marks=pytest.mark.skipif(
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


def test_more_steps_on_resume_extend_a_finished_step_planned_stage(tmp_path) -> None:
    """`train_model --resume --unet-steps M` after a run of N < M steps trains the M - N more (TRAINING.md)."""
    rates: list[float] = []
    first = _stage(tmp_path, StagePlan(0.0, steps=40), False, rates)
    assert first["done"] and first["step"] == 40 == len(rates)
    assert _stage(tmp_path, StagePlan(0.0, steps=40), True, rates)["step"] == 40 and len(rates) == 40
    longer = _stage(tmp_path, StagePlan(0.0, steps=70), True, rates)
    assert longer["done"] and longer["step"] == 70 == len(rates)  # the 30 more, not a restart
    assert json.loads((tmp_path / "toy.json").read_text())["step"] == 70


def test_ctrl_c_finishes_the_step_in_flight_checkpoints_it_and_resume_ends_as_an_unstopped_run(tmp_path,
                                                                                             monkeypatch) -> None:
    import os
    import signal

    import lowdim_tinyfaces.train_loop as loop

    steps, nets = 30, []
    _stage(tmp_path / "whole", StagePlan(0.0, steps=steps), False, nets=nets)
    real = loop.lr_scale

    def interrupt_at_step_7(step: int, frac: float) -> float:
        if step == 7:
            os.kill(os.getpid(), signal.SIGINT)  # arrives before the step's update, as a Ctrl-C would
        return real(step, frac)

    monkeypatch.setattr(loop, "lr_scale", interrupt_at_step_7)
    folder = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        _stage(folder, StagePlan(0.0, steps=steps), False)
    saved = json.loads((folder / "toy.json").read_text())
    assert saved["step"] == 8 and not saved["done"]  # step 7 ran whole, then the loop stopped
    assert "interrupted at step 8; checkpoint saved; --resume continues it" in (folder / "log.txt").read_text()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C works as usual again
    monkeypatch.undo()
    resumed = _stage(folder, StagePlan(0.0, steps=steps), True, nets=nets)
    assert resumed["done"] and resumed["step"] == steps
    whole_net, resumed_net = nets
    assert all(torch.equal(a, b) for a, b in zip(whole_net.state_dict().values(),
                                                 resumed_net.state_dict().values(), strict=True))


def test_a_save_stopped_halfway_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch) -> None:
    import lowdim_tinyfaces.train_state as state

    net, opt = torch.nn.Linear(2, 1), None
    state.save_checkpoint(tmp_path, "toy", {"net": net}, opt, None, {"step": 1})
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        net.weight.add_(1.0)
    real, writes = state.save_file, []

    def stop_after_the_first_file(tensors, path, metadata=None):
        writes.append(path)
        real(tensors, path, metadata=metadata)
        raise KeyboardInterrupt

    monkeypatch.setattr(state, "save_file", stop_after_the_first_file)
    with pytest.raises(KeyboardInterrupt):
        state.save_checkpoint(tmp_path, "toy", {"net": net}, opt, None, {"step": 2})
    monkeypatch.undo()
    fresh = torch.nn.Linear(2, 1)
    assert state.load_checkpoint(tmp_path, "toy", {"net": fresh}, None, None)["step"] == 1
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in before.items())
    state.save_checkpoint(tmp_path, "toy", {"net": net}, opt, None, {"step": 3})
    assert len(list(tmp_path.glob("toy.*.safetensors"))) == 1 and not writes[0].exists()  # the stray is gone


def test_a_checkpoint_from_before_its_files_were_named_still_resumes(tmp_path) -> None:
    from lowdim_tinyfaces.train_state import load_checkpoint, save_checkpoint
    from safetensors.torch import save_file

    net = torch.nn.Linear(2, 1)
    save_file({f"net.{k}": v for k, v in net.state_dict().items()}, tmp_path / "toy.weights.safetensors")
    (tmp_path / "toy.json").write_text(json.dumps({"step": 4, "elapsed": 1.0, "done": False, "param_groups": None}))
    fresh = torch.nn.Linear(2, 1)
    assert load_checkpoint(tmp_path, "toy", {"net": fresh}, None, None)["step"] == 4
    assert torch.equal(fresh.weight, net.weight)
    save_checkpoint(tmp_path, "toy", {"net": fresh}, None, None, {"step": 5})
    assert not (tmp_path / "toy.weights.safetensors").exists()  # the next save replaces the old layout


def test_sample_grids_and_checkpoints_come_as_often_as_the_config_says(tmp_path, monkeypatch) -> None:
    """A sample grid and a checkpoint after every step when their periods are 0; none when they are long."""
    import lowdim_tinyfaces.train_loop as train_loop

    saved: list[int] = []
    real_save = train_loop.save_checkpoint
    monkeypatch.setattr(train_loop, "save_checkpoint",
                        lambda *args: (saved.append(args[-1]["step"]), real_save(*args)))
    net = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)

    def run(folder, config: TrainConfig) -> list[int]:
        samples: list[int] = []
        saved.clear()
        step_fn = lambda step: {"loss": float(step)}  # noqa: E731
        run_stage("toy", folder, StagePlan(0.0, steps=5), {"net": net}, opt, 0.1, step_fn, config,
                  Logger(folder / "log.txt"), False, on_sample=samples.append)
        return samples

    folder = tmp_path / "often"
    folder.mkdir()
    assert run(folder, TrainConfig(checkpoint_minutes=0, sample_minutes=0)) == [1, 2, 3, 4, 5]
    assert saved == [1, 2, 3, 4, 5, 5]  # and the last one when the stage ends
    log = (folder / "log.txt").read_text()
    assert "finished at step 5" in log
    rare = tmp_path / "rare"
    rare.mkdir()
    assert run(rare, TrainConfig()) == []
    assert saved == [5]
