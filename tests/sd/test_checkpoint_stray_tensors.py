"""A checkpoint's ``trainable.safetensors`` holding a tensor the run's layers do not have, under a layer the run
does have (``<layer>/bogus``, a bare ``<layer>``), is refused by ``--resume`` in one line naming the file, the layer
and the tensor (review FAI1), rather than resumed with the stray tensor dropped without a word. Full DreamBooth's
checkpoint refuses a tensor of a part it does not train the same way."""

from __future__ import annotations

import checkpointed_runs
import pytest
import torch
from checkpointed_runs import STEP, train_run  # tests/sd, on the path as pytest puts it
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import lowdim
from lowdim_sd.loading import load_sd
from lowdim_sd.modes import FullTrainable

pytestmark = pytest.mark.usefixtures("one_thread")
made, run = checkpointed_runs.made, checkpointed_runs.run  # its fixtures, used by name


def _add_tensor(run, key_of) -> tuple:
    """The checkpoint's trainable.safetensors with one more tensor, keyed ``key_of(first layer)``; (path, layer)."""
    path = run / "checkpoints" / STEP / "trainable.safetensors"
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(path))
    layer = sorted(tensors)[0].rpartition("/")[0]
    save_file({**tensors, key_of(layer): torch.zeros(2)}, str(path), metadata=metadata)
    return path, layer


def _refused(tiny_sd, faces, run, path) -> str:
    with pytest.raises(lowdim.LowdimError) as refused:
        train_run(tiny_sd, faces, run, resume=True)[1]
    line = str(refused.value)
    assert "\n" not in line and line.startswith(f"{path}: "), line
    assert line.endswith(f"delete the checkpoint folder {STEP} to resume from an older one"), line
    return line


def test_a_stray_tensor_under_a_real_layer_is_refused_naming_both(tiny_sd, faces, run):
    path, layer = _add_tensor(run, lambda layer: f"{layer}/bogus")
    line = _refused(tiny_sd, faces, run, path)
    assert f"layer {layer}: unexpected tensor 'bogus'" in line, line


def test_a_bare_layer_name_is_refused_naming_the_key_as_the_file_holds_it(tiny_sd, faces, run):
    path, layer = _add_tensor(run, lambda layer: layer)
    line = _refused(tiny_sd, faces, run, path)
    assert f"tensor {layer!r} names no param" in line and "LAYER/PARAM" in line, line


def test_a_key_with_an_empty_layer_part_is_named_whole(tiny_sd, faces, run):
    path, _ = _add_tensor(run, lambda layer: "/A_train")
    line = _refused(tiny_sd, faces, run, path)
    assert "params for unexpected layers ['/A_train']" in line, line  # not the layer ''


def test_the_checkpoint_as_written_resumes(tiny_sd, faces, run):
    assert train_run(tiny_sd, faces, run, resume=True)[1].start_step == 2


@pytest.mark.parametrize("key", ["bogus", "text_encoder.text_model.final_layer_norm.weight"])
def test_full_dreambooth_refuses_a_tensor_of_no_part_it_trains(tiny_sd, key):
    trainable = FullTrainable(load_sd(str(tiny_sd)))  # the UNet only: a text encoder tensor is another run's
    state = trainable.state()
    with pytest.raises(lowdim.LowdimError, match=rf"^unexpected tensor {key!r}: this run trains the unet only"):
        trainable.load_state({**state, key: torch.zeros(2)})
    trainable.load_state(state)  # as written: loads
