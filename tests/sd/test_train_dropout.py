"""--dropout in the training engine: masks seeded per step (resume is exact), recorded, refused where no adapter
trains."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import lowdim
from lowdim.errors import LowdimError
from lowdim_sd.file_info import describe
from lowdim_sd.loading import load_sd
from lowdim_sd.modes import adapter_trainable, resolve_layers
from lowdim_sd.train import Subject, TrainConfig, train
from lowdim_sd.workflows import TrainJob, check_train_job

pytestmark = pytest.mark.usefixtures("one_thread")


def run(tiny_sd, faces, out: Path, steps: int, dropout: float, resume: bool = False):
    model = load_sd(str(tiny_sd))
    trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None), dropout=dropout)
    config = TrainConfig(steps=steps, learning_rate=2e-2, augment=False, checkpoint_every=2)
    result = train(model, [Subject(faces, 5)], trainable, config, out_dir=out, resume=resume, progress=False)
    return trainable.state(), result


def test_a_resumed_run_drops_what_an_uninterrupted_one_drops_and_the_callers_stream_is_kept(tiny_sd, faces,
                                                                                             tmp_path):
    before = torch.get_rng_state()
    straight, result = run(tiny_sd, faces, tmp_path / "a", 4, dropout=0.5)
    assert torch.equal(torch.get_rng_state(), before)  # the masks came from a stream of the step's own
    assert lowdim.read_adapter(result.outputs[0]).dropout == 0.5
    shown = describe(result.outputs[0])  # `lowdim show`: text for people, a number for --json
    assert dict(shown.rows)["trained with dropout"] == "0.5"
    assert shown.as_dict()["fields"]["trained_with_dropout"] == 0.5
    run(tiny_sd, faces, tmp_path / "b", 2, dropout=0.5)
    resumed, result = run(tiny_sd, faces, tmp_path / "b", 4, dropout=0.5, resume=True)
    assert result.start_step == 2
    assert all(torch.equal(straight[key], resumed[key]) for key in straight)
    without, _ = run(tiny_sd, faces, tmp_path / "c", 4, dropout=0.0)
    assert any(not torch.equal(straight[key], without[key]) for key in straight)  # the masks did act


def test_resuming_with_another_dropout_is_refused_naming_it(tiny_sd, faces, tmp_path):
    run(tiny_sd, faces, tmp_path, 2, dropout=0.25)
    # a low-level train() caller built the trainable with adapter_trainable(dropout=...): no TrainJob to name
    with pytest.raises(LowdimError, match=r"the trainable's dropout \(0\.25 there, 0\.0 now\)") as error:
        run(tiny_sd, faces, tmp_path, 4, dropout=0.0, resume=True)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("options, message", [
    ({"dropout": 1.0}, "TrainJob(dropout=...) must be a number in [0, 1) (0: off; 0.05 to 0.1 is usual), got 1.0"),
    ({"dropout": float("nan")}, "TrainJob(dropout=...) must be a number in [0, 1)"),
    ({"dropout": 0.1, "full": True}, "TrainJob(dropout=...) drops an adapter's input, and TrainJob(full=True) trains "
                                     "the model's own weights"),
    ({"dropout": 0.1, "space": "ti"}, "TrainJob(dropout=...) does not apply to TrainJob(space='ti'): it learns token "
                                      "vectors"),
])
def test_a_dropout_no_training_can_use_is_one_line_before_the_model_loads(tmp_path, options, message):
    with pytest.raises(LowdimError) as error:
        check_train_job(TrainJob(model="tinyfaces", images=[tmp_path / "face.png"], out=tmp_path / "o", **options))
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(("device", "forked"), [
    ("cpu", {"devices": []}),  # the CPU's generator is forked always
    ("cuda:1", {"devices": [1], "device_type": "cuda"}),
    ("mps", {"devices": [0], "device_type": "mps"}),  # Apple's one GPU, which manual_seed seeds as well
    ("xpu:0", {"devices": [0], "device_type": "xpu"}),
])
def test_the_masks_seeding_puts_back_the_models_device_generator_too(device, forked):
    from lowdim_sd.train_loss import accelerator_generator

    assert accelerator_generator(torch.device(device)) == forked
