"""``lowdim show`` of a train-hypernet run (its --out folder, or the hypernet.safetensors in it) says how many
identities it trained on and held out (split.json) and its last held-out numbers (metrics.jsonl), in the words the
run printed, so a researcher picks among runs without opening the JSON by hand (review DZ 4). The file copied away
from its run shows neither; split.json or metrics.jsonl damaged or missing is said in its row, and show goes on."""

from __future__ import annotations

import json
import shutil

import pytest
from hypertrain_jobs import job, records  # tests/sd, on the path as pytest puts it

from lowdim_cli.main import main
from lowdim_sd.file_info import describe
from lowdim_sd.hypertrain import train_hypernet

pytestmark = pytest.mark.usefixtures("one_thread")
FILE = "hypernet.safetensors"


@pytest.fixture(scope="module")
def finished(weights, tmp_path_factory):
    """A finished run of 3 steps on 4 identities, one held out, validated at steps 0, 2 and 3, with a checkpoint at
    step 2 (and at its end)."""
    out = tmp_path_factory.mktemp("finished") / "h"
    train_hypernet(job(weights, out), progress=False)
    return out


@pytest.fixture
def run(finished, tmp_path):
    """A copy of the finished run to break."""
    return shutil.copytree(finished, tmp_path / "h")


def _rows(path) -> dict[str, str]:
    return dict(describe(path).rows)


def _shown(capsys, path) -> str:
    code = main(["show", str(path)])
    out, err = capsys.readouterr()
    said = " ".join((out + err).split())
    assert code == 0 and "Traceback" not in said, said
    return said


def test_show_gives_a_runs_identities_and_last_validation_in_the_words_train_hypernet_printed(weights, tmp_path,
                                                                                            capsys):
    out = tmp_path / "h"
    assert main(["train-hypernet", "-w", str(weights), "-o", str(out), "--encoder-config", "tiny", "--width", "16",
                 "--heads", "2", "--iterations", "2", "--steps", "3", "--batch-size", "2", "--val-identities", "1",
                 "--val-every", "2", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "3 training and 1 held-out identities" in printed
    last = records(out / "metrics.jsonl", "val")[-1]
    assert last["step"] == 3
    for path in (out, out / FILE):
        rows = _rows(path)
        assert rows["identities"] == "3 training and 1 held out"
        said = rows["last validation"]
        assert said.startswith(f"step 3, 1 held-out identity: weight loss {last['weight_loss']:.4g} (")
        assert said.endswith(f", diffusion loss {last['diffusion_loss']:.4g}")
        assert said in printed  # the very line the run printed at its last step
        _shown(capsys, path)  # the table, exit 0


def test_show_json_gives_the_counts_and_the_last_validations_numbers(finished, capsys):
    assert main(["show", "--json", str(finished)]) == 0
    fields = json.loads(capsys.readouterr().out)["fields"]
    split = json.loads((finished / "split.json").read_text())
    last = records(finished / "metrics.jsonl", "val")[-1]
    assert fields["identities"] == {"training": len(split["train"]), "held_out": len(split["val"])} == {
        "training": 3, "held_out": 1}
    shown = fields["last_validation"]
    assert shown["step"] == 3
    assert (shown["weight_loss"], shown["weight_loss_vs_mean"], shown["diffusion_loss"]) == (
        last["weight_loss"], last["weight_loss_vs_mean"], last["diffusion_loss"])
    assert shown["identities"] == split["val"]


def test_the_file_copied_away_from_its_run_shows_neither_while_in_its_run_it_shows_both(finished, tmp_path):
    alone = tmp_path / "elsewhere" / FILE
    alone.parent.mkdir()
    shutil.copy(finished / FILE, alone)
    in_run = _rows(finished / FILE)
    assert {"identities", "last validation"} <= in_run.keys()
    rows = _rows(alone)
    assert "identities" not in rows and "last validation" not in rows
    # the rest is the same file's
    assert {key: value for key, value in in_run.items() if key not in ("identities", "last validation")} == {
        key: value for key, value in rows.items()}


def test_a_network_of_another_step_than_the_last_validation_is_not_given_its_numbers(run, capsys):
    shutil.copy(run / "checkpoints" / "step-000002" / FILE, run / FILE)  # the step-2 network, metrics up to step 3
    said = _rows(run / FILE)["last validation"]
    assert said == "not shown: metrics.jsonl's last is of step 3, this network's step 2"
    assert _rows(run)["identities"] == "3 training and 1 held out"
    assert "weight loss" not in _shown(capsys, run)


def _no_split(run):
    (run / "split.json").unlink()


def _split_text(text: str):
    return lambda run: (run / "split.json").write_text(text)


def _split_folder(run):
    (run / "split.json").unlink()
    (run / "split.json").mkdir()


def _no_metrics(run):
    (run / "metrics.jsonl").unlink()


def _metrics_folder(run):
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").mkdir()


def _metrics_text(text: str):
    return lambda run: (run / "metrics.jsonl").write_text(text)


def _last_record(**changed):
    def change(run):
        lines = (run / "metrics.jsonl").read_text().splitlines()
        last = json.loads(lines[-1])
        assert last["split"] == "val" and last["step"] == 3
        lines[-1] = json.dumps({**last, **changed})
        (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")

    return change


VALIDATED = "step 3, 1 held-out identity: weight loss "


@pytest.mark.parametrize(("damage", "identities", "validation"), [
    (_no_split, "unknown: no split.json here", VALIDATED),
    (_split_text("{\"train\": [\"a\""), "unknown: split.json is damaged", VALIDATED),
    (_split_text("[1, 2]"), "unknown: split.json is damaged", VALIDATED),
    (_split_folder, "unknown: split.json is not a file", VALIDATED),
    (_no_metrics, "3 training and 1 held out", "unknown: no metrics.jsonl here"),
    (_metrics_folder, "3 training and 1 held out", "unknown: metrics.jsonl is not a file"),
    (_metrics_text("{\"step\": 1, \"split\": \"tr"), "3 training and 1 held out",
     "unknown: metrics.jsonl holds no validation"),
    (_last_record(weight_loss="lots"), "3 training and 1 held out",
     "unknown: metrics.jsonl's validation of step 3 is damaged"),
    (_last_record(identities=7), "3 training and 1 held out",
     "unknown: metrics.jsonl's validation of step 3 is damaged"),
    (_last_record(identities=["someone else"]), "3 training and 1 held out",
     "not shown: metrics.jsonl's last validation held out other identities than split.json"),
], ids=["no split", "split cut short", "split not an object", "split a folder", "no metrics", "metrics a folder",
        "metrics cut short", "loss not a number", "identities not a list", "other identities"])
def test_a_damaged_or_missing_split_or_metrics_is_said_in_its_row_and_show_goes_on(run, capsys, damage,
                                                                                   identities, validation):
    damage(run)
    for path in (run, run / FILE):
        rows = _rows(path)
        assert rows["identities"] == identities
        assert rows["last validation"].startswith(validation)
        assert rows["predicts"].startswith("lidb ")  # the rest is still shown
        said = _shown(capsys, path)
        assert "use it: lowdim personalize" in said


def test_a_run_without_held_out_identities_says_it_had_none(weights, tmp_path):
    out = tmp_path / "h"
    train_hypernet(job(weights, out, val_identities=0, steps=2), progress=False)
    rows = _rows(out)
    assert rows["identities"] == "4 training and 0 held out"
    assert rows["last validation"] == "none: no held-out identities"
