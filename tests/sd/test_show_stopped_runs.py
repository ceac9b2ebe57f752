"""``lowdim show`` on what a stopped ``lowdim train`` or ``train-hypernet`` run leaves: its OUT folder (no adapter or
hypernetwork yet), a step folder and the checkpoint's trained state are lowdim's own, so show says what each is (a
checkpoint at step N, what trains) and how the run goes on (``--resume``), as it does for the optimizer state
beside them (review CB2). A finished run's folder still shows its adapter, and says which checkpoints it left."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from cli_train_runs import one_subject, train_args  # tests/sd, on the path as pytest puts it
from hypertrain_jobs import TINY_VIT
from images_for_tests import save_images
from safetensors import safe_open

from lowdim_cli.main import main
from lowdim_sd.file_info import describe

pytestmark = pytest.mark.usefixtures("one_thread")
STEP = "step-000003"


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    return one_subject(tmp_path_factory.mktemp("refs") / "me", side=16)


@pytest.fixture(scope="module")
def stopped(tiny_sd, refs, tmp_path_factory):
    """A `lowdim train` run of 5 steps stopped by Ctrl-C in step 4: its checkpoint at step 3, no adapter."""
    from lowdim_sd import train as engine

    real = engine.denoising_losses

    def stop_in_step_4(model, subjects, config, step, *args, **kwargs):
        if step == 3:
            raise KeyboardInterrupt
        return real(model, subjects, config, step, *args, **kwargs)

    out = tmp_path_factory.mktemp("stopped") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "denoising_losses", stop_in_step_4)
        assert main(train_args(tiny_sd, refs, out, "--steps", "5")) == 130
    assert not (out / "adapter.safetensors").exists() and (out / "checkpoints" / STEP / "state.json").is_file()
    return out


def _trained(stopped) -> tuple[dict, int, int]:
    """What the checkpoint records of what trains (its settings' signature), and its trained state's values and
    tensors, read here as the writer left them."""
    folder = stopped / "checkpoints" / STEP
    signature = json.loads((folder / "state.json").read_text())["settings"]["trainable"]
    with safe_open(str(folder / "trainable.safetensors"), "pt") as handle:
        shapes = [handle.get_slice(key).get_shape() for key in handle.keys()]  # noqa: SIM118
    return signature, sum(int(torch.tensor(shape).prod()) for shape in shapes), len(shapes)


def _said(capsys, *args: str) -> str:
    code = main(["show", *args])
    out, err = capsys.readouterr()
    said = " ".join((out + err).split())
    assert code == 0, said
    return said


@pytest.mark.parametrize(("where", "kind"), [
    ("", "a lowdim train run stopped at step 3 (its newest checkpoint; no adapter written yet)"),
    ("checkpoints/step-000003", "a lowdim train checkpoint (step 3)"),
    ("checkpoints/step-000003/trainable.safetensors", "the trained state of a lowdim train checkpoint (step 3)"),
])
def test_a_stopped_train_runs_folder_step_folder_and_trained_state_say_step_what_trains_and_resume(
        stopped, capsys, where, kind):
    path = stopped / where if where else stopped
    said = _said(capsys, str(path))
    assert said.startswith(f"{path}: {kind} ")
    assert said.endswith(f"use it: lowdim train ... -o {stopped} --resume")
    rows = dict(describe(path).rows)
    signature, values, tensors = _trained(stopped)
    assert rows["step"] == "3"
    config = json.dumps(signature["space_config"], separators=(",", ":"), sort_keys=True)
    assert rows["trains"] == (f"{signature['space']} {config} on {signature['layers']} layers "
                              f"({signature['layer_set']})")
    assert rows["trained state"] == f"{values:,} values in {tensors} tensors (trainable.safetensors)"


@pytest.mark.parametrize("where", ["", "checkpoints/step-000003", "checkpoints/step-000003/trainable.safetensors",
                                   "checkpoints/step-000003/optimizer.safetensors"])
def test_json_carries_the_step_what_trains_and_the_resume_command(stopped, capsys, where):
    path = stopped / where if where else stopped
    shown = json.loads(_said(capsys, str(path), "--json"))
    fields = shown["fields"]
    signature, values, tensors = _trained(stopped)
    assert fields["step"] == 3
    assert fields["trains"]["space"] == {"name": signature["space"], "config": signature["space_config"]}
    assert fields["trains"]["layers"] == {"count": signature["layers"], "set": signature["layer_set"]}
    assert fields["trained_state"] == {"file": "trainable.safetensors", "values": values, "tensors": tensors}
    assert fields["parameters"]["count"] == tensors  # one optimizer parameter per trained tensor
    assert shown["use"] == f"lowdim train ... -o {stopped} --resume"


def test_the_run_folder_names_its_newest_checkpoint(stopped, capsys):
    shown = json.loads(_said(capsys, str(stopped), "--json"))
    assert shown["kind"] == "a lowdim train run stopped at step 3 (its newest checkpoint; no adapter written yet)"
    assert shown["fields"]["checkpoint"] == {"folder": str(stopped / "checkpoints" / STEP), "checkpoints": 1}


def test_an_older_step_folder_says_a_resume_continues_from_the_newest(stopped, tmp_path, capsys):
    run = shutil.copytree(stopped, tmp_path / "run")
    older = shutil.copytree(run / "checkpoints" / STEP, run / "checkpoints" / "step-000001")
    state = json.loads((older / "state.json").read_text())
    (older / "state.json").write_text(json.dumps({**state, "step": 1}))
    shown = json.loads(_said(capsys, str(older), "--json"))
    assert shown["kind"] == "a lowdim train checkpoint (step 1)" and shown["fields"]["step"] == 1
    assert shown["fields"]["resumed_by"].endswith(f"continues from the newest checkpoint in {run}, step 3, not "
                                                  f"this one")
    assert shown["use"] == f"lowdim train ... -o {run} --resume"


def test_a_damaged_or_unfinished_checkpoint_is_said_to_be_and_offers_no_resume(stopped, tmp_path, capsys):
    run = shutil.copytree(stopped, tmp_path / "run")
    folder = run / "checkpoints" / STEP
    (folder / "state.json").write_text("[1, 2]")
    assert "use it:" not in _said(capsys, str(run))
    shown = json.loads(_said(capsys, str(run), "--json"))
    assert shown["fields"]["damaged"] == (f"{folder}: checkpoint is unreadable (state.json holds a list, not an "
                                          f"object); delete it to resume from an older one")
    assert shown["use"] == ""
    (folder / "state.json").unlink()  # a save cut short: no complete checkpoint is left in the run
    said = _said(capsys, str(folder))
    assert said.startswith(f"{folder}: an unfinished lowdim train checkpoint (step 3) ") and "use it:" not in said
    assert "no state.json" in dict(describe(folder).rows)["unfinished"]


def test_a_finished_runs_folder_shows_its_adapter_and_the_checkpoints_it_left(tiny_sd, refs, tmp_path, capsys):
    out = tmp_path / "done"
    assert main(train_args(tiny_sd, refs, out, "--steps", "2", "--checkpoint-every", "1")) == 0
    capsys.readouterr()
    said = _said(capsys, str(out))
    assert said.startswith(f"{out / 'adapter.safetensors'}: a lowdim adapter ")
    assert dict(describe(out).rows)["checkpoints"] == f"2 left in {out / 'checkpoints'}, the newest at step 2"
    fields = json.loads(_said(capsys, str(out), "--json"))["fields"]
    assert fields["checkpoints"] == {"count": 2, "newest_step": 2, "folder": str(out / "checkpoints")}


def test_a_finished_several_subject_runs_folder_names_the_adapters_it_wrote_not_a_stop(tiny_sd, tmp_path, capsys):
    people = tmp_path / "people"
    for name in ("ann", "bob"):
        save_images(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(len(name))), people / name, "x")
    out = tmp_path / "o"
    assert main(["train", "-m", str(tiny_sd), "--subjects", str(people), "-o", str(out), "--steps", "1",
                 "--checkpoint-every", "1"]) == 0
    capsys.readouterr()
    shown = json.loads(_said(capsys, str(out), "--json"))
    assert shown["kind"] == "the folder of a finished lowdim train run (its newest checkpoint: step 1)"
    assert shown["fields"]["wrote"] == ["ann.safetensors", "bob.safetensors"]
    assert shown["fields"]["trains"]["subjects"] == ["ann", "bob"]
    assert shown["use"] == f"lowdim show {out / 'ann.safetensors'}"
    for name in ("ann", "bob"):  # as a run stopped before its end leaves it
        (out / f"{name}.safetensors").unlink()
    assert json.loads(_said(capsys, str(out), "--json"))["kind"] == ("a lowdim train run stopped at step 1 (its "
                                                                     "newest checkpoint; no adapters written yet)")


@pytest.fixture(scope="module")
def stopped_hypernet(weight_folders, tmp_path_factory):
    """A `lowdim train-hypernet` run of 3 steps stopped by Ctrl-C in step 2: its checkpoint at step 1."""
    import lowdim_sd.hypertrain as ht

    weights = weight_folders(tmp_path_factory.mktemp("hyperdata"), "w", 4, seed=9)
    out = tmp_path_factory.mktemp("hyper") / "h"
    real, calls = ht.pair_losses, []

    def stop_in_step_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ht, "pair_losses", stop_in_step_2)
        assert main(["train-hypernet", "-w", str(weights), "-o", str(out), "--encoder-config", json.dumps(TINY_VIT),
                     "--width", "16", "--heads", "2", "--iterations", "1", "--steps", "3", "--batch-size", "2",
                     "--checkpoint-every", "0", "--alpha", "0"]) == 130
    assert not (out / "hypernet.safetensors").exists()
    return out


@pytest.mark.parametrize(("where", "kind"), [
    ("", "a lowdim train-hypernet run stopped at step 1 (its newest checkpoint; no hypernetwork written yet)"),
    ("checkpoints/step-000001", "a lowdim train-hypernet checkpoint (step 1)"),
])
def test_a_stopped_train_hypernet_runs_folder_and_step_folder_say_step_and_resume(stopped_hypernet, capsys, where,
                                                                                   kind):
    path = stopped_hypernet / where if where else stopped_hypernet
    said = _said(capsys, str(path))
    assert said.startswith(f"{path}: {kind} ")
    assert said.endswith(f"use it: lowdim train-hypernet ... -o {stopped_hypernet} --resume")
    rows = dict(describe(path).rows)
    assert rows["trains"].startswith("a hypernetwork predicting lidb {")
    assert rows["trained state"].endswith("tensors (hypernet.safetensors)")
    fields = json.loads(_said(capsys, str(path), "--json"))["fields"]
    assert fields["step"] == 1 and fields["trains"]["space"]["name"] == "lidb"
    assert fields["trained_state"]["file"] == "hypernet.safetensors"
