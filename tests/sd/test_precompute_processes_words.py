"""What precompute says of its processes: a stopped batch a rerun under another number of processes discards is
discarded for that reason (its record, ``batch.json``, names the run's processes), and the stop line of a process
other than the main one starts ``process R of P:``. No launcher: the functions take the rank and the processes, or
read them from the environment a launcher sets (RANK, WORLD_SIZE), as every process of a torchrun run does."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from lowdim_sd import precompute_batches as batches
from lowdim_sd.precompute_batches import InFlight, Kept
from lowdim_sd.precompute_resume import stop_note

STEPS = 200
HEADER = {"config": {"steps": STEPS}}


def _stopped(out: Path, name: str, identities: list[str], step: int, **processes: int) -> Path:
    """A batch folder as a stop leaves it: its record (with the run's ``rank``/``processes``, where given: folders
    of older runs have neither) and a complete checkpoint at ``step``."""
    folder = out / name
    checkpoint = folder / "checkpoints" / f"step-{step:06d}"
    checkpoint.mkdir(parents=True)
    (checkpoint / "state.json").write_text(json.dumps({"step": step, "settings": {}}))
    (folder / "batch.json").write_text(json.dumps({"identities": identities, "header": HEADER, **processes}))
    return folder


def _first_batch(folder: Path, names: list[str], **run: int) -> tuple[bool, list[str]]:
    """Whether this run's first batch (``names``) resumes ``folder``, and the warnings said."""
    where = InFlight(folder, HEADER, set(), lambda line: None, **run)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        # The names differ: the model, pictures and training config are never read
        resumed = where.resumes(None, [], SimpleNamespace(subject_names=names), None)  # type: ignore[arg-type]
    return resumed, [str(warning.message) for warning in said]


def _record(folder: Path) -> dict:
    return json.loads((folder / "batch.json").read_text())


def test_a_rerun_under_three_processes_says_the_count_changed_not_that_batch_subjects_did(tmp_path):
    folder = _stopped(tmp_path, ".batch-in-flight-p1", ["id-00001", "id-00003"], 34, rank=1, processes=2)
    resumed, said = _first_batch(folder, ["id-00001", "id-00004"], rank=1, processes=3)
    assert not resumed
    assert said == [f"{folder}: discarded the stopped batch (id-00001, id-00003, at step 34): the run before had 2 "
                    f"processes, this one 3; training the batch from step 0"]
    assert {key: _record(folder)[key] for key in ("identities", "rank", "processes")} == {
        "identities": ["id-00001", "id-00004"], "rank": 1, "processes": 3}


def test_a_folder_of_an_older_run_without_the_count_keeps_the_reason_it_had(tmp_path):
    folder = _stopped(tmp_path, ".batch-in-flight-p1", ["id-00001", "id-00003"], 34)
    _, said = _first_batch(folder, ["id-00001", "id-00004"], rank=1, processes=3)
    assert len(said) == 1 and "this run's first batch is id-00001, id-00004 (another " in said[0]
    assert "or other identities to train); training the batch from step 0" in said[0] and "processes" not in said[0]


def test_the_same_count_with_other_identities_keeps_the_batch_subjects_reason(tmp_path):
    folder = _stopped(tmp_path, ".batch-in-flight-p1", ["id-00001", "id-00003"], 34, rank=1, processes=2)
    _, said = _first_batch(folder, ["id-00001"], rank=1, processes=2)
    assert len(said) == 1 and "batch_subjects" in said[0] and "processes" not in said[0]


def test_a_leftover_batch_whose_identities_another_process_trains_now_names_the_count(tmp_path):
    folder = _stopped(tmp_path, ".batch-in-flight-p0", ["id-00004"], 32, rank=0, processes=2)
    with pytest.warns(UserWarning) as said:
        batches.leave_no_batch(folder, {"id-00000", "id-00003"}, processes=3)
    assert [str(warning.message) for warning in said] == [
        f"{folder}: discarded the stopped batch (id-00004, at step 32): the run before had 2 processes, this one 3"]
    assert not folder.exists()


def test_a_leftover_batch_of_a_run_under_as_many_processes_has_none_of_its_identities_to_train(tmp_path):
    folder = _stopped(tmp_path, ".batch-in-flight-p0", ["id-00004"], 32, rank=0, processes=2)
    with pytest.warns(UserWarning, match="this run has none of its identities to train$"):
        batches.leave_no_batch(folder, set(), processes=2)


def test_the_main_process_sweeping_another_runs_folders_names_both_counts(tmp_path):
    folder = _stopped(tmp_path, ".batch-in-flight-p2", ["id-00002"], 5, rank=2, processes=3)
    with pytest.warns(UserWarning) as said:
        batches.sweep_other_runs(tmp_path, 0, 1)
    assert [str(warning.message) for warning in said] == [
        f"{folder}: discarded the stopped batch (id-00002, at step 5): the run before had 3 processes, this one 1"]


@pytest.mark.parametrize(("environment", "expected"), [({"RANK": "1", "WORLD_SIZE": "2"}, (1, 2)), ({}, (0, 1))])
def test_a_batch_record_names_the_process_and_the_run_s_processes_the_launcher_gave(tmp_path, monkeypatch,
                                                                                    environment, expected):
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    folder = tmp_path / ".batch-in-flight-p1"
    resumed, said = _first_batch(folder, ["id-00001"])
    assert (resumed, said) == (False, [])
    assert (_record(folder)["rank"], _record(folder)["processes"]) == expected


def _note(rank: int, trained: int, kept: int, batch: Kept | None, tmp_path: Path) -> str:
    return stop_note(KeyboardInterrupt(), trained, kept, tmp_path / f"index-p{rank}.json", rank, 2, batch)


def test_a_later_stop_line_of_a_process_other_than_the_main_one_says_which_process_it_is(tmp_path):
    batch = Kept(tmp_path / ".batch-in-flight-p1", ["id-00005"], 25, STEPS)
    other, main = _note(1, 2, 2, batch, tmp_path), _note(0, 2, 2, batch, tmp_path)
    assert other == f"process 2 of 2: {main.replace('index-p0', 'index-p1')}"
    assert main.startswith(f"interrupted with 2 identities trained in this run; 2 are kept in {tmp_path}/index-p0")
    assert _note(1, 1, 1, None, tmp_path).startswith("process 2 of 2: interrupted with 1 identity trained")


def test_a_first_batch_stop_line_points_at_the_other_lines_only_if_there_are_any(tmp_path):
    batch = Kept(tmp_path / ".batch-in-flight-p1", ["id-00001"], 34, STEPS)
    main, other = _note(0, 0, 0, None, tmp_path), _note(1, 0, 0, batch, tmp_path)
    assert main.startswith(f"interrupted during the first batch of process 1 of 2, so it added nothing to {tmp_path} "
                           f"(the other processes' lines, if any, say what they kept); ")
    assert other.startswith(f"interrupted during the first batch of process 2 of 2, so it added nothing to {tmp_path} "
                            f"(the other processes' lines, if any, say what they kept); it kept 34 of {STEPS} steps")
