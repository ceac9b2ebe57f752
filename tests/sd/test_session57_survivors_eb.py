"""What review EB found untested (session 57), in `lowdim train`'s and `lowdim generate`'s folders, train-hypernet's
runs and the web page's lines:

- a --full run into a folder a --subjects run wrote leaves that run's adapters (OUT/ann.safetensors, ...) as they
  were, since their names are the user's subjects and lowdim cannot tell them from adapters kept there on purpose,
  and names them in one warning as it starts, so none is taken for this run's;
- a `lowdim merge` model kept at OUT/model is no --full run's: an adapter run neither refuses nor removes it;
- an adapter run into a folder holding both a --full run's model/ and an export of the adapter it replaces names
  (and --overwrite removes) both;
- a prompts.json from before paths were recorded absolute, naming the model as typed (``./pipe``), is the same
  model to a rerun that gives it the same way: not "other settings";
- a train-hypernet run stopped during the validation of its last step, which is no --val-every step, validates
  that step when it resumes; one resumed from a step an unbroken run never validates does not validate it: either
  way its metrics.jsonl ends as an unbroken run's;
- ``lowdim show`` gives a run's identities and last validation to the run's network only, not to another network
  file kept in the run's folder under another name;
- the line a tab's failed event keeps for its follow-up is taken once: a later follow-up finds none of it, and
  another tab's line stays its own."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from cli_train_runs import run  # tests/sd, on the path as pytest puts it
from hypertrain_jobs import job, records
from images_for_tests import save_images

import lowdim.hyper
import lowdim_sd.hypertrain as hypertrain
from lowdim_cli.main import main
from lowdim_sd import runs
from lowdim_sd.file_info import describe

pytestmark = pytest.mark.usefixtures("one_thread")

EXPORT = "adapter.diffusers.safetensors"


@pytest.fixture(scope="module")
def people(tmp_path_factory) -> Path:
    """Two subjects, ann and bob, one small picture each."""
    folder = tmp_path_factory.mktemp("people")
    for seed, name in enumerate(("ann", "bob")):
        save_images(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1, folder / name,
                    name)
    return folder


@pytest.fixture(scope="module")
def subjects_run(tiny_sd, people, tmp_path_factory) -> Path:
    """A finished `train --subjects` run's folder: ann.safetensors, bob.safetensors and its checkpoints."""
    out = tmp_path_factory.mktemp("subjects") / "o"
    assert main([str(a) for a in ("train", "-m", tiny_sd, "--subjects", people, "-o", out, "--steps", 1,
                                  "--no-augment")]) == 0
    return out


@pytest.fixture(scope="module")
def full_model(tiny_sd, people, tmp_path_factory) -> Path:
    """A finished `train --full` run's model/ folder."""
    out = tmp_path_factory.mktemp("full") / "o"
    assert main([str(a) for a in ("train", "-m", tiny_sd, "-i", people / "ann", "-o", out, "--steps", 1,
                                  "--no-augment", "--full")]) == 0
    return out / "model"


def train(tiny_sd, people, out, *extra) -> tuple:
    return ("train", "-m", tiny_sd, "-i", people / "ann", "-o", out, "--steps", 1, "--no-augment", *extra)


def contents(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}


@pytest.mark.parametrize("given", [["--overwrite"], []], ids=["overwrite", "checkpoints-cleared-away"])
def test_a_full_run_names_the_subjects_runs_adapters_it_leaves_beside_its_model(tiny_sd, people, subjects_run,
                                                                               tmp_path, capsys, given):
    out = shutil.copytree(subjects_run, tmp_path / "o")
    if not given:  # no --overwrite: the earlier run's checkpoints would refuse the run, as they should
        shutil.rmtree(out / "checkpoints")
    (out / "carol.safetensors").write_bytes(b"the user's own file")  # no lowdim adapter: not named
    before = contents(out)
    code, text = run(capsys, *train(tiny_sd, people, out, "--full", *given))
    assert code == 0, text
    assert sorted(contents(out)) == ["ann.safetensors", "bob.safetensors", "carol.safetensors"]
    assert contents(out) == before  # each left as it was
    assert (out / "model").is_dir()
    assert text.count("lowdim adapters this run does not write") == 1, text
    assert (f"{out / 'ann.safetensors'}, {out / 'bob.safetensors'}: lowdim adapters this run does not write, left "
            f"as they were beside this run's model") in text, text
    assert "carol.safetensors" not in text, text


def test_a_full_run_into_a_fresh_folder_warns_of_no_adapter(tiny_sd, people, tmp_path, capsys):
    code, text = run(capsys, *train(tiny_sd, people, tmp_path / "o", "--full"))
    assert code == 0 and "earlier run" not in text, text


def test_a_merged_model_kept_at_model_is_neither_refused_nor_removed_by_an_adapter_run(tiny_sd, people,
                                                                                      subjects_run, tmp_path,
                                                                                      capsys):
    out = tmp_path / "o"
    code, text = run(capsys, "merge", "-m", tiny_sd, "-a", subjects_run / "ann.safetensors", "-o", out / "model",
                     "--format", "diffusers")
    assert code == 0, text
    merged = {path.relative_to(out): path.read_bytes() for path in (out / "model").rglob("*") if path.is_file()}
    for extra in ([], ["--overwrite"]):
        code, text = run(capsys, *train(tiny_sd, people, out, *extra))
        assert code == 0 and str(out / "model") not in text, text
        assert {path.relative_to(out): path.read_bytes() for path in (out / "model").rglob("*")
                if path.is_file()} == merged


def test_an_adapter_run_names_and_overwrite_removes_both_a_full_runs_model_and_an_earlier_export(
        tiny_sd, people, subjects_run, full_model, tmp_path, capsys):
    from lowdim_sd.export import export_adapter

    out = tmp_path / "o"
    shutil.copytree(full_model, out / "model")
    export_adapter(subjects_run / "ann.safetensors", out / EXPORT, "diffusers")  # an earlier adapter's export
    code, text = run(capsys, *train(tiny_sd, people, out))
    assert code == 1 and text.count("Error:") == 1 and "Traceback" not in text, text
    assert str(out / "model") in text and str(out / EXPORT) in text, text
    code, text = run(capsys, *train(tiny_sd, people, out, "--overwrite"))
    assert code == 0, text
    assert not (out / "model").exists() and not (out / EXPORT).exists() and (out / "adapter.safetensors").is_file()
    assert "removed" in text and str(out / "model") in text and str(out / EXPORT) in text, text


def _draw(model: str, out: Path, capsys) -> str:
    capsys.readouterr()
    code = main(["generate", "-m", model, "-p", "a face", "--steps", "1", "--resolution", "16", "--device", "cpu",
                 "--dtype", "fp32", "-o", str(out)])
    said = " ".join(capsys.readouterr().err.split())
    assert code == 0, said
    return said


def test_an_older_record_of_the_model_by_a_relative_path_is_the_same_model(tiny_sd, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(Path(tiny_sd).parent)
    typed = f"./{Path(tiny_sd).name}"
    out = tmp_path / "out"
    _draw(typed, out, capsys)
    record = json.loads((out / "prompts.json").read_text(encoding="utf-8"))
    assert record["settings"]["model"] == str(Path(tiny_sd).resolve())
    record["settings"]["model"] = typed  # as lowdim recorded it before
    (out / "prompts.json").write_text(json.dumps(record), encoding="utf-8")
    assert "other settings" not in _draw(typed, out, capsys)
    # another model still is
    other = shutil.copytree(tiny_sd, tmp_path / "other")
    assert "other settings" in _draw(str(other), out, capsys)


def _without_time(path) -> list[dict]:
    return [{key: value for key, value in record.items() if key != "time"}
            for record in map(json.loads, path.read_text().splitlines())]


def test_a_stop_in_the_last_steps_validation_off_the_val_every_grid_is_validated_by_the_resume(weights, tmp_path,
                                                                                               monkeypatch):
    options = {"steps": 3, "val_every": 2, "checkpoint_every": 1}
    unbroken = hypertrain.train_hypernet(job(weights, tmp_path / "unbroken", **options), progress=False)
    real, calls = hypertrain.evaluate, []

    def stop_in_validation(*args):
        calls.append(1)
        if len(calls) == 3:  # step 0's, step 2's, then the last step's (3)
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(hypertrain, "evaluate", stop_in_validation)
    with pytest.raises(runs.Interrupted, match="at step 3"):
        hypertrain.train_hypernet(job(weights, tmp_path / "h", **options), progress=False)
    monkeypatch.undo()
    rest = hypertrain.train_hypernet(job(weights, tmp_path / "h", resume=True, **options), progress=False)
    assert rest.start_step == 3
    assert [r["step"] for r in records(rest.metrics, "val")] == [0, 2, 3]
    assert _without_time(rest.metrics) == _without_time(unbroken.metrics)


def test_a_resume_from_a_step_off_the_val_every_grid_does_not_validate_it(weights, tmp_path, monkeypatch):
    options = {"steps": 4, "val_every": 2, "checkpoint_every": 1}
    unbroken = hypertrain.train_hypernet(job(weights, tmp_path / "unbroken", **options), progress=False)
    real, stopped = lowdim.hyper.save_hypernet, []

    def stop_in_step_3s_checkpoint(path, *args, **kwargs):
        if "step-000003" in str(path) and not stopped:
            stopped.append(path)
            raise KeyboardInterrupt
        return real(path, *args, **kwargs)

    monkeypatch.setattr(lowdim.hyper, "save_hypernet", stop_in_step_3s_checkpoint)
    with pytest.raises(runs.Interrupted):
        hypertrain.train_hypernet(job(weights, tmp_path / "h", **options), progress=False)
    monkeypatch.undo()
    rest = hypertrain.train_hypernet(job(weights, tmp_path / "h", resume=True, **options), progress=False)
    assert rest.start_step == 3
    assert [r["step"] for r in records(rest.metrics, "val")] == [0, 2, 4]
    assert _without_time(rest.metrics) == _without_time(unbroken.metrics)


def test_another_network_file_in_a_runs_folder_is_not_given_the_runs_identities_or_validation(weights, tmp_path):
    out = tmp_path / "h"
    hypertrain.train_hypernet(job(weights, out), progress=False)
    kept = shutil.copy(out / "hypernet.safetensors", out / "best.safetensors")  # a network kept beside, same steps
    ran = dict(describe(out / "hypernet.safetensors").rows)
    assert {"identities", "last validation"} <= ran.keys()
    rows = dict(describe(kept).rows)
    assert "identities" not in rows and "last validation" not in rows
    assert {key: value for key, value in ran.items() if key not in ("identities", "last validation")} == rows


def test_a_tabs_kept_line_is_taken_once_and_another_tabs_stays_its_own():
    gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")
    from lowdim_sd.ui.page_parts import BySession, on_page

    lines: BySession[str] = BySession()
    mine, theirs = SimpleNamespace(session_hash="mine"), SimpleNamespace(session_hash="theirs")

    @lines.keeping
    @on_page
    def check(refusal: str, request=None) -> None:
        raise ValueError(refusal)

    for request, refusal in ((mine, "no run to draw"), (theirs, "no [V] in the prompt")):
        with pytest.raises(gr.Error):
            check(refusal, request=request)
    assert "no run to draw" in lines.take(mine)
    assert lines.take(mine) is None  # taken: a later follow-up of my tab writes no stale line
    assert "no [V] in the prompt" in lines.take(theirs)
    assert lines.take(theirs) is None


def test_lines_no_follow_up_takes_are_bounded_the_oldest_going_first():
    """An API client's failed call, or a tab closed before its follow-up, leaves a line no one takes: a server up
    for weeks must not keep them all (review EE 2)."""
    pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")
    from lowdim_sd.ui.page_parts import KEPT_SESSIONS, BySession

    lines: BySession[str] = BySession()
    for index in range(KEPT_SESSIONS + 10):
        lines.keep(f"client-{index}", f"line {index}")
    lines.keep("client-0", "again")  # kept anew: now the newest, not the first to go
    newest = SimpleNamespace(session_hash=f"client-{KEPT_SESSIONS + 9}")
    assert lines.take(SimpleNamespace(session_hash="client-0")) == "again"
    for gone in ("client-1", "client-10"):  # the oldest, the last of them pushed out by client-0's new line
        assert lines.take(SimpleNamespace(session_hash=gone)) is None
    assert lines.take(SimpleNamespace(session_hash="client-11")) == "line 11"
    assert lines.take(newest) == f"line {KEPT_SESSIONS + 9}"
