"""Review EQ of session 59: a refused train-hypernet --overwrite keeps the earlier run; the hypernetwork an adapter
records is told apart from another run's; --val-fraction holds out what it says and its refusals name it; the
metrics log's train keys are documented; mixed -w folders are refused with precompute's flags and both values."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypertrain_jobs import job  # tests/sd, on the path as pytest puts it

import lowdim
from lowdim.hyper.storage import read_hypernet
from lowdim_cli.main import main
from lowdim_sd.hypertrain import train_hypernet
from lowdim_sd.hypertrain_io import split_identities
from lowdim_sd.personalize_recipe import recipe

pytestmark = pytest.mark.usefixtures("one_thread")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "hypertrain.md"


@pytest.fixture(scope="module")
def weights(weight_folders, tmp_path_factory):
    return weight_folders(tmp_path_factory.mktemp("review-eq-data"), "w", 4, seed=11)


@pytest.fixture(scope="module")
def finished(weights, tmp_path_factory):
    """A finished two-step run (checkpoints, split, metrics, network), made once: tests copy it."""
    out = tmp_path_factory.mktemp("review-eq-runs") / "h"
    train_hypernet(job(weights, out, steps=2, checkpoint_every=1), progress=False)
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


CLI = ["--encoder-config", "tiny", "--steps", "1", "--val-identities", "1", "--batch-size", "2", "--overwrite"]


@pytest.mark.parametrize("slip", [["--set", "bogus=1"], ["--width", "32", "--heads", "3"],
                                  ["--set", "architecture=retrieval", "--all-images"]],
                         ids=["unknown-set-key", "heads-not-dividing-width", "retrieval-refused-while-filling"])
def test_a_refused_overwrite_leaves_every_earlier_file_byte_for_byte(weights, finished, tmp_path, capsys, slip):
    out = tmp_path / "h"
    shutil.copytree(finished, out)
    before = _files(out)
    assert {"hypernet.safetensors", "split.json", "metrics.jsonl"} <= set(before)
    assert main(["train-hypernet", "-w", str(weights), "-o", str(out), *CLI, *slip]) == 1
    assert "Error" in capsys.readouterr().err
    assert _files(out) == before
    assert sorted(path.name for path in out.iterdir()) == sorted({Path(name).parts[0] for name in before})


def test_a_stop_while_the_network_is_built_leaves_the_earlier_run_whole(weights, finished, tmp_path, monkeypatch):
    out = tmp_path / "h"
    shutil.copytree(finished, out)
    before = _files(out)

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("lowdim_sd.hypertrain._network", stopped)
    with pytest.raises(KeyboardInterrupt):
        train_hypernet(job(weights, out, steps=1, seed=1, overwrite=True), progress=False)
    assert _files(out) == before


@pytest.fixture(scope="module")
def other_run(weights, tmp_path_factory):
    """The finished run's twin with another --lr, --seed and --batch-size: another network of the same header
    fields but those."""
    out = tmp_path_factory.mktemp("review-eq-other") / "h"
    train_hypernet(job(weights, out, steps=2, checkpoint_every=1, learning_rate=1e-3, seed=5, batch_size=1),
                   progress=False)
    return out


def test_two_runs_with_other_options_record_other_digests(finished, other_run):
    first, second = (read_hypernet(run / "hypernet.safetensors") for run in (finished, other_run))
    assert first.digest != second.digest
    assert (first.metadata["learning_rate"], first.metadata["seed"], first.metadata["batch_size"]) == (1e-4, 0, 2)
    assert (second.metadata["learning_rate"], second.metadata["seed"], second.metadata["batch_size"]) == (1e-3, 5, 1)
    assert first.metadata["run_id"] != second.metadata["run_id"]


def test_a_resumed_run_writes_the_uninterrupted_runs_file_byte_for_byte(weights, tmp_path):
    # Both runs here, under this test's one thread: the module's `finished` run was made before one_thread applied
    # (a module fixture comes first), with however many threads the machine gives, which sum in another order.
    whole, out = tmp_path / "whole", tmp_path / "r"
    train_hypernet(job(weights, whole, steps=2, checkpoint_every=1), progress=False)
    train_hypernet(job(weights, out, steps=1, checkpoint_every=1), progress=False)
    train_hypernet(job(weights, out, steps=2, checkpoint_every=1, resume=True), progress=False)
    assert (out / "hypernet.safetensors").read_bytes() == (whole / "hypernet.safetensors").read_bytes()


def _personalize_run(hypernet_file, iterations: int | None) -> SimpleNamespace:
    """What ``recipe`` reads of a personalize run, with the hypernetwork file it predicted from."""
    given = SimpleNamespace(iterations=iterations, image=Path("face.png"), no_hyper=False, crop_margin=0.6,
                            face_index=None, resolution=None, keep_styles=0, rank=1)
    return SimpleNamespace(job=given, hypernet=hypernet_file, bases_seed=0, only_hyper=True, seed=0, crop=False,
                           prompt="a [V] face", describer=None)


def test_the_adapter_recipe_names_the_hypernetwork_by_path_digest_and_iterations_used(finished, other_run,
                                                                                        monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    given = Path("..") / tmp_path.name / "link"
    given.symlink_to(finished)
    read = read_hypernet(given / "hypernet.safetensors")
    made = recipe(_personalize_run(read, None))["hypernet"]
    assert made == {"file": str((finished / "hypernet.safetensors").resolve()), "digest": read.digest,
                    "iterations": read.stored["hyper_config"]["iterations"], "bases_seed": 0}
    assert recipe(_personalize_run(read, 1))["hypernet"]["iterations"] == 1
    other = recipe(_personalize_run(read_hypernet(other_run / "hypernet.safetensors"), None))["hypernet"]
    assert (other["file"], other["digest"]) != (made["file"], made["digest"]) and other["digest"] != made["digest"]


def test_a_small_nonzero_val_fraction_holds_out_one(tmp_path):
    names = [f"id-{n}" for n in range(8)]
    train, val = split_identities(names, job([], tmp_path, val_identities=None, val_fraction=0.01), tmp_path)
    assert len(val) == 1 and len(train) == 7
    assert split_identities(names, job([], tmp_path, val_identities=None, val_fraction=0.0), tmp_path)[1] == []


@pytest.mark.parametrize(("flags", "said", "unsaid"), [
    (["--val-fraction", "0.99"], "--val-fraction 0.99 gives 4 held-out identities of 4", "--val-identities"),
    (["--val-identities", "4"], "--val-identities 4 gives 4 held-out identities of 4", "--val-fraction"),
    (["--val-fraction", "1.0"], "--val-fraction must be in [0, 1), got 1.0", "--val-identities"),
    (["--val-identities", "-1"], "--val-identities must be >= 0, got -1", "--val-fraction"),
], ids=["fraction-rounds-to-all", "count-all", "fraction-range", "count-range"])
def test_a_held_out_count_refused_names_only_the_flag_that_set_it(weights, tmp_path, capsys, flags, said, unsaid):
    assert main(["train-hypernet", "-w", str(weights), "-o", str(tmp_path / "h"), "--encoder-config", "tiny",
                 "--steps", "1", *flags]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert said in err and unsaid not in err and "None" not in err
    assert not (tmp_path / "h" / "hypernet.safetensors").exists()


def test_the_docs_say_what_each_key_of_a_train_line_means(finished):
    line = next(r for r in map(json.loads, (finished / "metrics.jsonl").read_text().splitlines())
                if r["split"] == "train")
    assert line["weight_loss"] == pytest.approx(sum(line["weight_loss_per_iterate"]) / 2)  # the mean, as documented
    section = DOCS.read_text().split("### Held-out identities and metrics")[1].split("\n### ")[0]
    train_part = section.split('"split": "train"')[1]
    for key in set(line) - {"step", "split"}:
        assert f"* `{key}`:" in train_part, key
    assert "mean over the iterates" in train_part


def test_mixed_weight_folders_are_refused_with_the_flag_and_both_values(weights, tmp_path, capsys):
    other = tmp_path / "wseed"
    shutil.copytree(weights, other)
    index = json.loads((other / "index.json").read_text())
    index["seed"], index["config"]["seed"] = 1, 1  # as precompute --seed 1 records it
    (other / "index.json").write_text(json.dumps(index))
    assert main(["train-hypernet", "-w", str(weights), "-w", str(other), "-o", str(tmp_path / "h"),
                 "--encoder-config", "tiny", "--steps", "1"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert f"--seed (0 in {weights}, 1 in {other})" in err and "config.seed" not in err
    with pytest.raises(lowdim.LowdimError, match=r"made with other settings than .*\(0 in .*, 1 in .*\)"):
        train_hypernet(job([weights, other], tmp_path / "p"), progress=False)


def test_an_earlier_run_a_killed_overwrite_left_set_aside_is_put_back_by_the_next_run(weights, finished, tmp_path):
    """Review ES 1: a SIGKILL during a retrieval fill under --overwrite leaves the earlier run in .earlier-run-PID
    and the killed run's split in its place; the next run puts the earlier one back and says so."""
    out = tmp_path / "h"
    shutil.copytree(finished, out)
    before = _files(out)
    aside = out / ".earlier-run-424242"
    aside.mkdir()
    for path in list(out.iterdir()):
        if path != aside:
            path.rename(aside / path.name)
    (out / "split.json").write_text(json.dumps({"train": ["nobody"], "val": []}))  # what the killed run wrote
    with pytest.warns(UserWarning, match=r"put back the earlier run that a killed --overwrite had set aside in "
                                         r"\.earlier-run-424242"):
        resumed = train_hypernet(job(weights, out, steps=3, checkpoint_every=1, resume=True), progress=False)
    assert resumed.start_step == 2 and not aside.exists()
    assert (out / "split.json").read_bytes() == before["split.json"]


def test_while_a_retrieval_overwrite_fills_the_earlier_run_waits_whole_where_the_next_run_puts_it_back(
        weights, finished, tmp_path, monkeypatch):
    """What a SIGKILL during the fill would leave: the earlier run's every file in .earlier-run-PID (which the next
    run puts back, test above), none of it in the folder the killed run was writing."""
    import lowdim_sd.hypertrain as hypertrain

    out = tmp_path / "h"
    shutil.copytree(finished, out)
    before = _files(out)
    seen = {}

    def killed_here(job, *args, **kwargs):
        (aside,) = out.glob(".earlier-run-*")
        seen.update(aside=_files(aside), in_place=(out / "hypernet.safetensors").exists())
        raise lowdim.LowdimError("refused while filling")

    monkeypatch.setattr(hypertrain, "fill_retrieval", killed_here)
    assert main(["train-hypernet", "-w", str(weights), "-o", str(out), *CLI, "--set", "architecture=retrieval"]) == 1
    assert seen == {"aside": before, "in_place": False}
    assert _files(out) == before
