"""The edges of ``lowdim ui --out``'s run folders that review DH found unpinned: a run name the file system refuses
(too long), the start line's cut of damaged runs, the count of kept runs, a folder that holds no run, an empty
pick, the age a refusal names, the preview download's name, a run name's seconds and the hypernetwork box of a
server model lowdim cannot resolve."""

from __future__ import annotations

import errno
import json
import types
from pathlib import Path

import pytest
from ui_requests import handler, refused  # tests/sd, on the path as pytest puts it

import lowdim_sd.ui.studio as studio_module
from lowdim.errors import LowdimError
from lowdim_sd.ui.run_folders import (
    RUN_FILE,
    is_run,
    kept_runs_line,
    list_runs,
    read_run,
    unreadable_runs,
    unreadable_runs_line,
    write_record,
)
from lowdim_sd.ui.studio import Busy, Studio, StudioConfig

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")

TOO_LONG = "a" * 300  # over the 255 bytes a file name may have on Linux and macOS


def finished_run(out: Path, name: str) -> Path:
    """A run folder as the studio leaves one (``write_record``), with empty files: nothing here reads them."""
    work = out / f".{name}.partial"
    work.mkdir(parents=True)
    (work / "adapter.safetensors").write_bytes(b"")
    (work / "preview.png").write_bytes(b"")
    write_record(work, name, {"model": "tinyfaces"}, {"fast finetune": 1.0}, [], [])
    return work.rename(out / name)


def damaged_run(out: Path, name: str) -> None:
    (out / name).mkdir(parents=True)
    (out / name / RUN_FILE).write_text("[]")


def cli_run(out: Path, name: str) -> None:
    """What `lowdim personalize -o OUT/NAME` leaves in ``--out``: an adapter, no run.json."""
    (out / name).mkdir(parents=True)
    (out / name / "adapter.safetensors").write_bytes(b"")


@pytest.fixture
def page(tmp_path):
    """(the page of a studio whose ``--out`` is empty, that ``--out``)."""
    from lowdim_sd.ui.page import build_page

    studio = Studio(StudioConfig(model="tinyfaces", out=tmp_path / "ui"))
    return build_page(studio), studio.config.out


# Finding 0: a name the file system refuses -------------------------------------------------------------------------

def test_open_with_a_name_too_long_for_a_file_says_no_such_run_cut_short(page):
    page, out = page
    line = refused(handler(page, "open_run"), TOO_LONG)
    assert line == f"Earlier runs has no run '{'a' * 40}…': pick one it lists (the finished runs in {out})"


def test_draw_with_a_run_name_too_long_for_a_file_says_no_such_run_cut_short(page):
    page, out = page
    line = refused(handler(page, "draw_more"), {"run": TOO_LONG}, "tinyfaces", "a [V] face", 1.0, "1", 0, 2, 1)
    assert line == f"no finished run '{'a' * 40}…' in {out}"


def test_a_name_the_file_system_calls_invalid_is_no_run(tmp_path, monkeypatch):
    """EINVAL: what a file system that refuses some characters (FAT, SMB) says of a name holding one."""
    stat = Path.stat

    def refusing(path: Path, *args, **kwargs):
        if path.parent.name == "bad:name":
            raise OSError(errno.EINVAL, "Invalid argument", str(path))
        return stat(path, *args, **kwargs)
    monkeypatch.setattr(Path, "stat", refusing)
    assert is_run(tmp_path, "bad:name") is False
    with pytest.raises(LowdimError, match=f"^no finished run 'bad:name' in {tmp_path}$"):
        read_run(tmp_path, "bad:name")


def test_a_run_name_lowdim_gives_is_echoed_whole(page):
    page, out = page
    name = "20260101-120000-" + "b" * 40 + "-2"  # the longest a photo's name gives (claim_run_name)
    assert refused(handler(page, "open_run"), name).startswith(f"Earlier runs has no run '{name}': ")


# Findings 1-6 and 10: survivors of the mutation audit ----------------------------------------------------------------

def test_the_start_line_names_three_damaged_runs_and_dots_for_the_rest(tmp_path):
    for name in "abcde":
        damaged_run(tmp_path, name)
    assert unreadable_runs_line(tmp_path) == (
        f"5 runs in {tmp_path} have a run.json this lowdim cannot read (a, b, c, ...): their files are still in "
        f"{tmp_path / 'a'}, {tmp_path / 'b'}, {tmp_path / 'c'}, ...")


def test_kept_runs_are_counted_with_one_singular_and_none_plural(tmp_path):
    assert kept_runs_line(tmp_path) == f"0 finished runs are kept in {tmp_path}"
    finished_run(tmp_path, "one")
    assert kept_runs_line(tmp_path) == f"1 finished run is kept in {tmp_path}"
    damaged_run(tmp_path, "two")  # left out of Earlier runs, still kept
    assert kept_runs_line(tmp_path) == f"2 finished runs are kept in {tmp_path}"


def test_a_cli_run_folder_in_out_is_neither_a_damaged_run_nor_a_kept_one(tmp_path):
    finished_run(tmp_path, "ui-run")
    cli_run(tmp_path, "cli-run")
    assert list_runs(tmp_path) == ["ui-run"] and unreadable_runs(tmp_path) == []
    assert unreadable_runs_line(tmp_path) == ""
    assert kept_runs_line(tmp_path) == f"1 finished run is kept in {tmp_path}"


@pytest.mark.parametrize("folder", ["notes", "cli-run"])
def test_a_folder_that_holds_no_run_opened_by_name_is_no_run(page, folder):
    page, out = page
    (out / "notes").mkdir()
    cli_run(out, "cli-run")
    line = refused(handler(page, "open_run"), folder)
    assert line == f"Earlier runs has no run '{folder}': pick one it lists (the finished runs in {out})"


@pytest.mark.parametrize("nothing", [None, "", []], ids=["none", "empty-text", "empty-list"])
def test_open_with_nothing_picked_says_pick_one(page, nothing):
    page, _ = page
    assert refused(handler(page, "open_run"), nothing) == "pick an earlier run first"


def test_a_refusal_names_the_running_jobs_age_in_seconds(tmp_path, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(studio_module, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    studio = Studio(StudioConfig(out=tmp_path / "ui"))
    with studio.job("personalization", owner="tab-1"):
        now[0] += 3.2
        age = r"^a personalization started in another tab is already running \(for 3 s\)"
        with pytest.raises(Busy, match=age), studio.job("drawing", owner="tab-2"):
            pass


def test_the_preview_download_is_named_after_the_run_as_a_preview(tmp_path):
    folder = finished_run(tmp_path, "20260101-120000-face")
    downloads = read_run(tmp_path, folder.name).downloads
    assert downloads["preview"].name == "20260101-120000-face.preview.png"
    assert downloads["lowdim adapter"].name == "20260101-120000-face.lowdim.safetensors"
    assert json.loads((folder / RUN_FILE).read_text())["downloads"]["preview"] == (
        "downloads/20260101-120000-face.preview.png")



# Review DH's dropped mutants that survived (FFD) ------------------------------------------------------------------

def test_two_runs_a_few_seconds_apart_get_names_that_differ_by_their_second(tmp_path, monkeypatch):
    """The stamp has seconds, from the clock as it is: a run in the same minute as another is no '-2' of it."""
    import time

    from lowdim_sd.ui import run_folders

    def clock_at(second: int) -> types.SimpleNamespace:
        at = time.struct_time((2026, 1, 1, 12, 0, second, 3, 1, 0))
        return types.SimpleNamespace(strftime=lambda fmt: time.strftime(fmt, at))

    monkeypatch.setattr(run_folders, "time", clock_at(5))
    first = run_folders.claim_run_name(tmp_path, Path("me.png"))
    monkeypatch.setattr(run_folders, "time", clock_at(9))
    assert (first, run_folders.claim_run_name(tmp_path, Path("me.png"))) == (
        "20260101-120005-me", "20260101-120009-me")


def test_a_server_model_lowdim_cannot_resolve_gets_the_hypernetwork_box_cleared_and_locked(tmp_path, monkeypatch):
    """With LOWDIM_NO_PLUGINS set a bare word is an unknown model (sd_backend raises): it ships no hypernetwork,
    so the page does not offer to start from one, nor a run claim it could have."""
    from lowdim_sd.ui.page import build_page
    from lowdim_sd.ui.studio_notes import ships_a_hypernet

    monkeypatch.setenv("LOWDIM_NO_PLUGINS", "1")
    assert ships_a_hypernet("faces-v9") is False
    page = build_page(Studio(StudioConfig(model="faces-v9", out=tmp_path / "ui")))
    box = next(block for block in page.blocks.values() if getattr(block, "elem_id", None) == "use-hyper")
    assert (box.value, box.interactive) == (False, False)
    assert box.info.startswith("faces-v9 ships no hypernetwork")
