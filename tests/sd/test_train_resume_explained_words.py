"""A refused ``lowdim train --resume`` says nothing false: a difference one named option explains (``--no-merge-frozen``
or another ``--init`` changes the merged weights' digest; ``--full`` names its one subject ``0``) is not said a second
time as another base model or other reference images, while a model or images that really differ still are."""

from __future__ import annotations

import pytest
import resume_refusals
import torch
from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

import lowdim
from lowdim_cli.main import main
from lowdim_sd.tiny import save_tiny_pipeline
from lowdim_sd.train import TrainConfig
from lowdim_sd.workflows import TrainJob, run_train

pytestmark = pytest.mark.usefixtures("one_thread")

MODEL_LINE = "the base model differs"
IMAGES_LINE = "the reference images"


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("refs") / "me"
    save_images(torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(1)) * 2 - 1, folder, "me")
    return folder


@pytest.fixture(scope="module")
def other_sd(tmp_path_factory):
    """The tiny architecture with other weights: really another base model."""
    return save_tiny_pipeline(tmp_path_factory.mktemp("other") / "pipe", seed=1)


def _train(model, refs, out, *extra: object) -> list[str]:
    return ["train", "-m", str(model), "-i", str(refs), "--out", str(out), "--checkpoint-every", "1",
            *(str(item) for item in extra)]


_refusal = resume_refusals.refusal


def test_merged_initial_adapter_is_not_called_another_model(tiny_sd, other_sd, refs, tmp_path, capsys):
    assert main(_train(tiny_sd, refs, tmp_path / "a", "--steps", 1)) == 0
    assert main(_train(tiny_sd, refs, tmp_path / "b", "--steps", 1, "--seed", 5)) == 0
    first, other = tmp_path / "a" / "adapter.safetensors", tmp_path / "b" / "adapter.safetensors"
    init = tmp_path / "init"
    assert main(_train(tiny_sd, refs, init, "--steps", 1, "--init", first)) == 0
    capsys.readouterr()

    said = _refusal(capsys, _train(tiny_sd, refs, init, "--steps", 2, "--resume", "--init", first, "--no-merge-frozen"))
    assert "other settings: --merge-frozen there, --no-merge-frozen now; resume with" in said
    said = _refusal(capsys, _train(tiny_sd, refs, init, "--steps", 2, "--resume", "--init", other))
    assert "other settings: --init (another initial adapter" in said and MODEL_LINE not in said, said
    said = _refusal(capsys, _train(tiny_sd, refs, init, "--steps", 2, "--resume"))
    assert "--init there, no --init now" in said and MODEL_LINE not in said, said
    said = _refusal(capsys, _train(tiny_sd, refs, tmp_path / "a", "--steps", 2, "--resume", "--init", other))
    assert "no --init there, --init now" in said and MODEL_LINE not in said, said

    # The same initial adapter merged into another model: nothing but the model explains the digest.
    said = _refusal(capsys, _train(other_sd, refs, init, "--steps", 2, "--resume", "--init", first))
    assert f"other settings: {MODEL_LINE} (weights digest" in said
    assert main(_train(tiny_sd, refs, init, "--steps", 2, "--resume", "--init", first)) == 0  # the same run resumes


def test_unmerged_initial_adapter_on_another_model_is_named(tiny_sd, other_sd, refs, tmp_path, capsys):
    assert main(_train(tiny_sd, refs, tmp_path / "a", "--steps", 1)) == 0
    first = tmp_path / "a" / "adapter.safetensors"
    assert main(_train(tiny_sd, refs, tmp_path / "init", "--steps", 1, "--init", first, "--no-merge-frozen")) == 0
    capsys.readouterr()
    said = _refusal(capsys, _train(other_sd, refs, tmp_path / "init", "--steps", 2, "--resume", "--init", first,
                                   "--no-merge-frozen"))
    assert f"other settings: {MODEL_LINE} (weights digest" in said
    # An adapter run from scratch on another model: the same.
    said = _refusal(capsys, _train(other_sd, refs, tmp_path / "a", "--steps", 2, "--resume"))
    assert f"other settings: {MODEL_LINE} (weights digest" in said


def test_full_run_resumed_as_an_adapter_run_names_the_mode_not_its_subject(tiny_sd, refs, tmp_path, capsys):
    assert main(_train(tiny_sd, refs, tmp_path / "full", "--steps", 1, "--full")) == 0
    assert main(_train(tiny_sd, refs, tmp_path / "a", "--steps", 1)) == 0
    capsys.readouterr()

    said = _refusal(capsys, _train(tiny_sd, refs, tmp_path / "full", "--steps", 2, "--resume"))
    assert "--full there, no --full now; resume with" in said and IMAGES_LINE not in said, said
    said = _refusal(capsys, _train(tiny_sd, refs, tmp_path / "a", "--steps", 2, "--resume", "--full"))
    assert "no --full there, --full now; resume with" in said and IMAGES_LINE not in said, said
    assert main(_train(tiny_sd, refs, tmp_path / "full", "--steps", 2, "--resume", "--full")) == 0


def test_other_images_beside_another_mode_are_still_named(tiny_sd, refs, tmp_path, capsys):
    assert main(_train(tiny_sd, refs, tmp_path / "full", "--steps", 1, "--full")) == 0
    others = tmp_path / "others"
    save_images(torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(2)) * 2 - 1, others, "me")
    capsys.readouterr()
    said = _refusal(capsys, _train(tiny_sd, others, tmp_path / "full", "--steps", 2, "--resume"))
    assert "--full there, no --full now; the reference images differ (pixels, crop or size; digest" in said
    assert "subject '" not in said, said  # one subject each side: no name of its own to give


def test_from_python_a_merged_initial_adapter_is_not_called_another_model(tiny_sd, refs, tmp_path):
    def job(**changes) -> TrainJob:
        return TrainJob(model=str(tiny_sd), images=[refs], out=tmp_path / changes.pop("out", "p"),
                        config=TrainConfig(steps=changes.pop("steps", 1), checkpoint_every=1), **changes)

    run_train(job(out="a"), progress=False)
    run_train(job(initial=tmp_path / "a" / "adapter.safetensors"), progress=False)
    with pytest.raises(lowdim.LowdimError, match="other settings") as refused:
        run_train(job(steps=2, resume=True, initial=tmp_path / "a" / "adapter.safetensors", merge_frozen=False),
                  progress=False)
    assert MODEL_LINE not in str(refused.value)
