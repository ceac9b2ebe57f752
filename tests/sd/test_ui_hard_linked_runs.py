"""A run of ``lowdim ui --out`` backed up with hard links (``cp -al``, ``rsync --link-dest``, a snapshot tool; review
BU1): it is still left out of *Earlier runs* (the page serves a run's files, and a hard link out of the run cannot be
told from one into it), but it is named as what it is, with what to do, not as a run.json "this lowdim cannot read"
or "damaged"; a ``run.json`` hard-linked out is left out the same way (lowdim reads no record from outside a run)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import test_ui_linked_run_folders

from lowdim.errors import LowdimError
from lowdim_sd.ui.run_folders import (
    kept_runs_line,
    list_runs,
    read_run,
    unreadable_runs,
    unreadable_runs_line,
)

pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")

GOOD = "20260101-120000-face"
ADVICE = "(a backup made with hard links, cp -al?)"
make_run = test_ui_linked_run_folders.make_run  # a finished run as the studio lays one out


def backup_with_hard_links(folder: Path, backup: Path) -> None:
    """What ``cp -al FOLDER BACKUP/`` makes: the same tree, each file a second name of the run's own."""
    shutil.copytree(folder, backup / folder.name, copy_function=os.link)


@pytest.fixture
def out(tmp_path, untrained_adapter) -> Path:
    out = tmp_path / "ui"
    make_run(out, GOOD, untrained_adapter)
    return out


def refusal(out: Path, name: str) -> str:
    with pytest.raises(LowdimError) as caught:
        read_run(out, name)
    return str(caught.value)


def test_a_run_backed_up_with_cp_al_is_named_as_hard_linked_with_what_to_do(out, tmp_path):
    backup_with_hard_links(out / GOOD, tmp_path / "backup")
    assert list_runs(out) == [] and unreadable_runs(out) == [GOOD]
    assert refusal(out, GOOD) == (f"run '{GOOD}' in {out} is left out: run.json is also linked from outside its "
                                  f"folder {ADVICE}; copy the run's folder with cp -a (not -al) to open it")
    assert unreadable_runs_line(out) == (
        f"1 run in {out} is left out as a file of it is also linked from outside its folder ({out / GOOD}/run.json; "
        f"a backup made with hard links, cp -al?): copy the run's folder with cp -a (not -al) to open it")


def test_a_gallery_picture_hard_linked_out_is_named_by_its_file(out, tmp_path):
    os.link(out / GOOD / "gallery" / "00.png", tmp_path / "kept.png")
    assert list_runs(out) == []
    assert refusal(out, GOOD) == (f"run '{GOOD}' in {out} is left out: gallery/00.png is also linked from outside "
                                  f"its folder {ADVICE}; copy the run's folder with cp -a (not -al) to open it")


def test_a_run_json_hard_linked_out_is_left_out_too(out, tmp_path):
    """Not served, but read: a record whose other name is outside the run may be written from there."""
    os.link(out / GOOD / "run.json", tmp_path / "record.json")
    assert list_runs(out) == [] and unreadable_runs(out) == [GOOD]
    assert refusal(out, GOOD).startswith(f"run '{GOOD}' in {out} is left out: run.json is also linked from outside")


def test_each_reason_is_named_once_hard_links_beside_damaged_and_symlinked_runs(out, tmp_path, untrained_adapter):
    make_run(out, "b-backed-up", untrained_adapter)
    backup_with_hard_links(out / GOOD, tmp_path / "backup")
    backup_with_hard_links(out / "b-backed-up", tmp_path / "backup")
    (out / "a-damaged").mkdir()
    (out / "a-damaged" / "run.json").write_text("[]")
    (out / "c-linked").symlink_to(out / GOOD, target_is_directory=True)
    assert unreadable_runs_line(out) == (
        f"1 run in {out} has a run.json this lowdim cannot read (a-damaged): its files are still in {out}/a-damaged; "
        f"1 run in {out} is left out as a symlink, which lowdim never makes ({out}/c-linked -> {out / GOOD}): "
        f"replace the link with a copy of what it leads to; "
        f"2 runs in {out} are left out as a file of each is also linked from outside its folder "
        f"({out}/{GOOD}/run.json, {out}/b-backed-up/run.json; a backup made with hard links, cp -al?): copy each "
        f"run's folder with cp -a (not -al) to open it")


def test_a_copy_made_with_cp_a_opens_and_the_stop_line_counts_every_run_kept(out, tmp_path):
    backup_with_hard_links(out / GOOD, tmp_path / "backup")
    shutil.copytree(out / GOOD, out / "copied")  # as cp -a copies: files of its own
    assert list_runs(out) == ["copied"] and read_run(out, "copied").gallery
    assert kept_runs_line(out) == f"2 finished runs are kept in {out}"  # left out of the list, still on disk


@pytest.mark.parametrize("leads_to", ["its name in the run", "its name outside"])
def test_a_symlink_in_the_run_to_a_file_linked_out_is_no_second_name_inside(out, tmp_path, leads_to):
    """A symlink is a file of its own, not a name of the file it leads to: counted as one (review BT4), it would
    let a picture whose other name is outside the run pass as one with both names inside."""
    picture = out / GOOD / "gallery" / "00.png"
    os.link(picture, tmp_path / "kept.png")
    (out / GOOD / "alias.png").symlink_to(picture if leads_to == "its name in the run" else tmp_path / "kept.png")
    assert list_runs(out) == [] and unreadable_runs(out) == [GOOD]
    assert refusal(out, GOOD) == (f"run '{GOOD}' in {out} is left out: gallery/00.png is also linked from outside "
                                  f"its folder {ADVICE}; copy the run's folder with cp -a (not -al) to open it")
