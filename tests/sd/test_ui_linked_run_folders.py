"""Run folders linked into ``lowdim ui --out`` (review FAF3): the page serves the files a run's ``run.json`` names,
so a run folder that is itself a symlink (to anywhere), a ``run.json`` that is one (task FAN), and a run file that
is a hard link to a file outside its run folder are left out, as any run not as lowdim writes it; the hard links
lowdim makes among a run's own files (its downloads) are its own. The start line names a linked run as a symlink,
not as a run.json this lowdim cannot read."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from lowdim.errors import LowdimError
from lowdim_sd.ui.run_folders import list_runs, read_run, unreadable_runs, unreadable_runs_line, write_record

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing")

GOOD = "20260101-120000-face"


def make_run(out: Path, name: str, adapter: Path) -> Path:
    """A finished run laid out as the studio lays one out (``write_record``, which links its downloads)."""
    work = out / f".{name}.partial"
    (work / "gallery").mkdir(parents=True)
    shutil.copyfile(adapter, work / "adapter.safetensors")
    Image.new("RGB", (32, 32)).save(work / "preview.png")
    Image.new("RGB", (32, 32)).save(work / "gallery" / "00.png")
    write_record(work, name, {"model": "tinyfaces", "steps": 2}, {"fast finetune": 1.0},
                 [{"file": "gallery/00.png", "caption": "reference"}], [])
    work.rename(out / name)
    return out / name


@pytest.fixture
def out(tmp_path, untrained_adapter) -> Path:
    """``--out`` holding one good run; a run made elsewhere beside it, and a file that is no run's."""
    out = tmp_path / "ui"
    make_run(out, GOOD, untrained_adapter)
    make_run(tmp_path / "elsewhere", "shared", untrained_adapter)
    Image.new("RGB", (32, 32)).save(tmp_path / "secret.png")
    return out


def test_a_run_lowdim_writes_links_only_its_own_files_and_is_listed(out):
    adapter = out / GOOD / "downloads" / f"{GOOD}.lowdim.safetensors"
    assert adapter.stat().st_nlink == 2  # the run's adapter.safetensors, under the run's name
    assert list_runs(out) == [GOOD] and read_run(out, GOOD).adapter == adapter


@pytest.mark.parametrize("target", ["elsewhere", "inside"])
def test_a_run_folder_that_is_a_symlink_is_left_out(out, target):
    """To a run made elsewhere, or to a run of ``--out`` itself: lowdim never writes a run folder as a link."""
    real = out.parent / "elsewhere" / "shared" if target == "elsewhere" else out / GOOD
    (out / "linked").symlink_to(real, target_is_directory=True)
    assert list_runs(out) == [GOOD] and unreadable_runs(out) == ["linked"]
    with pytest.raises(LowdimError) as caught:
        read_run(out, "linked")
    assert str(caught.value) == (f"run 'linked' in {out}: its folder is a symlink (to {real}), which lowdim never "
                                 f"makes: copy the run's folder into {out} to open it")


def test_a_run_json_that_is_a_symlink_is_left_out(out):
    """A real run folder whose run.json leads to a file outside it, one that reads as the run's own record:
    lowdim writes run.json as a plain file, and reads no record from outside the run folder."""
    folder, real = out / GOOD, out.parent / "record.json"
    (folder / "run.json").rename(real)
    (folder / "run.json").symlink_to(real)
    assert list_runs(out) == [] and unreadable_runs(out) == [GOOD]
    with pytest.raises(LowdimError) as caught:
        read_run(out, GOOD)
    assert str(caught.value) == (f"run '{GOOD}' in {out}: its run.json is a symlink (to {real}), which lowdim never "
                                 f"makes: put a copy of the file it leads to in its place to open the run")


def test_the_start_line_names_a_linked_run_as_a_symlink(out):
    (out / "linked").symlink_to(out.parent / "elsewhere" / "shared", target_is_directory=True)
    assert unreadable_runs_line(out) == (
        f"1 run in {out} is left out as a symlink, which lowdim never makes ({out}/linked -> "
        f"{out.parent}/elsewhere/shared): replace the link with a copy of what it leads to")


def test_linked_and_damaged_runs_are_each_named_with_their_reason(out):
    """A run.json linked out, a folder linked in, and a run.json that does not read: one line, each reason once."""
    folder = out.parent / "elsewhere" / "shared"
    (out / "b-linked").symlink_to(out / GOOD, target_is_directory=True)
    (out / "a-damaged").mkdir()
    (out / "a-damaged" / "run.json").write_text("[]")
    shutil.copytree(folder, out / "c-json", symlinks=True)
    (out / "c-json" / "run.json").unlink()
    (out / "c-json" / "run.json").symlink_to(folder / "run.json")
    assert list_runs(out) == [GOOD] and unreadable_runs(out) == ["a-damaged", "b-linked", "c-json"]
    assert unreadable_runs_line(out) == (
        f"1 run in {out} has a run.json this lowdim cannot read (a-damaged): its files are still in "
        f"{out}/a-damaged; 2 runs in {out} are left out as symlinks, which lowdim never makes ({out}/b-linked -> "
        f"{out / GOOD}, {out}/c-json/run.json -> {folder}/run.json): replace each link with a copy of what it "
        f"leads to")


def test_a_file_hard_linked_out_of_the_run_folder_is_left_out(out):
    preview = out / GOOD / "downloads" / f"{GOOD}.preview.png"
    preview.unlink()
    os.link(out.parent / "secret.png", preview)
    assert list_runs(out) == [] and unreadable_runs(out) == [GOOD]
    with pytest.raises(LowdimError) as caught:
        read_run(out, GOOD)
    assert str(caught.value) == (f"run '{GOOD}' in {out} is left out: downloads/{GOOD}.preview.png is also linked "
                                 f"from outside its folder (a backup made with hard links, cp -al?); copy the run's "
                                 f"folder with cp -a (not -al) to open it")


def test_a_client_of_a_served_page_gets_the_line_not_the_linked_run(out):
    gradio_client = pytest.importorskip("gradio_client")
    from ui_requests import refusal, served_page  # tests/sd, on the path as pytest puts it

    (out / "linked").symlink_to(out.parent / "elsewhere" / "shared", target_is_directory=True)
    with served_page(out) as (url, _):
        client = gradio_client.Client(url, verbose=False)
        line = refusal(client, "linked", api_name="/open_run")
        gallery, files, *_ = client.predict(GOOD, api_name="/open_run")
    assert line.startswith(f"run 'linked' in {out}: its folder is a symlink") and len(gallery) == 1
