"""A run in ``lowdim ui --out`` whose run.json this lowdim cannot read (damaged, or of another version's shape) is
left out of *Earlier runs*, and `lowdim ui`'s start line says so and where its files still are."""

from __future__ import annotations

import json
from types import SimpleNamespace

from lowdim_cli.ui_command import start_line
from lowdim_sd.ui.run_folders import kept_runs_line, list_runs, unreadable_runs, unreadable_runs_line

RECORD = {"settings": {"model": "tinyfaces"}, "stages": {"finetune": 5.0},
          "gallery": [{"file": "gallery/00.png", "caption": "a [V] face"}],
          "downloads": {"lowdim adapter": "adapter.safetensors"}}


def run_folder(out, name: str, record: dict | str) -> None:
    """A run folder holding the files RECORD names (a run.json naming a missing file is damaged: review BJ1)."""
    (out / name / "gallery").mkdir(parents=True)
    (out / name / "gallery" / "00.png").write_bytes(b"")
    (out / name / "adapter.safetensors").write_bytes(b"")
    (out / name / "run.json").write_text(record if isinstance(record, str) else json.dumps(record))


def test_a_run_of_another_shape_is_named_with_where_its_files_are(tmp_path):
    out = tmp_path / "ui"
    run_folder(out, "20261130-120000-face", {**{k: v for k, v in RECORD.items() if k != "downloads"},
                                             "files": RECORD["downloads"]})
    run_folder(out, "20261201-090000-me", RECORD)
    # A run in the making, its run.json half written: neither listed, nor unreadable, nor a kept run (review CF12)
    run_folder(out, ".20261202-080000-me.partial", '{"settings": {"mod')
    (out / "notes").mkdir()  # no run.json: not a run at all
    assert list_runs(out) == ["20261201-090000-me"]
    assert unreadable_runs(out) == ["20261130-120000-face"]
    assert unreadable_runs_line(out) == (
        f"1 run in {out} has a run.json this lowdim cannot read (20261130-120000-face): its files are still in "
        f"{out / '20261130-120000-face'}")
    assert kept_runs_line(out) == f"2 finished runs are kept in {out}"
    line = start_line(SimpleNamespace(share_url=None), "", "127.0.0.1", 7860, False, out)
    assert line == (f"lowdim ui: serving on http://127.0.0.1:7860 (Ctrl-C stops it); runs are kept in {out}; "
                    f"{unreadable_runs_line(out)}")


def test_several_are_counted_and_none_leaves_the_start_line_as_it_was(tmp_path):
    out = tmp_path / "ui"
    out.mkdir()
    assert unreadable_runs_line(out) == "" and unreadable_runs_line(tmp_path / "missing") == ""
    assert start_line(SimpleNamespace(share_url=None), "", "127.0.0.1", 7860, False, out) == (
        f"lowdim ui: serving on http://127.0.0.1:7860 (Ctrl-C stops it); runs are kept in {out}")
    run_folder(out, "b", '{"settings": {}, "stag')
    run_folder(out, "a", "[]")
    assert unreadable_runs_line(out) == (f"2 runs in {out} have a run.json this lowdim cannot read (a, b): their "
                                         f"files are still in {out}/a, {out}/b")
