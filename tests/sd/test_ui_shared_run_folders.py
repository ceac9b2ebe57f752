"""A run folder someone shared, dropped into ``lowdim ui --out`` (review BJ1-BJ3): its ``run.json`` may name any
path and hold any JSON. The page serves only the run folder's own files (its gallery pictures and the downloads
lowdim writes), and a record that names anything else, or is of the wrong shape, is a damaged run: left out of
*Earlier runs*, named by ``unreadable_runs``, and one line on Open, never a file from outside served to the page."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from lowdim.errors import LowdimError
from lowdim_sd.ui.run_folders import (
    ADAPTER_LABEL,
    RunRecord,
    chosen_run,
    list_runs,
    read_run,
    unreadable_runs,
    write_record,
)
from lowdim_sd.ui.studio import Studio, StudioConfig

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")

GOOD = "20260101-120000-face"


def make_run(out: Path, name: str, adapter: Path, edit: Callable[[dict], None] | None = None) -> Path:
    """A finished run laid out as the studio lays one out (``write_record``), its ``run.json`` then edited."""
    work = out / f".{name}.partial"
    (work / "gallery").mkdir(parents=True)
    shutil.copyfile(adapter, work / "adapter.safetensors")
    Image.new("RGB", (32, 32)).save(work / "preview.png")
    Image.new("RGB", (32, 32)).save(work / "gallery" / "00.png")
    write_record(work, name, {"model": "tinyfaces", "steps": 2}, {"fast finetune": 1.0, "preview": 0.5},
                 [{"file": "gallery/00.png", "caption": "reference"}], [])
    folder = out / name
    work.rename(folder)
    if edit is not None:
        record = json.loads((folder / "run.json").read_text())
        edit(record)
        (folder / "run.json").write_text(json.dumps(record))
    return folder


@pytest.fixture
def out(tmp_path, untrained_adapter) -> Path:
    """``--out`` holding one good run, beside a secret file and folder that are no run's."""
    (tmp_path / "secret.txt").write_text("TOP SECRET\n")
    (tmp_path / "elsewhere").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "elsewhere" / "00.png")
    make_run(tmp_path / "ui", GOOD, untrained_adapter)
    return tmp_path / "ui"


def assert_left_out(out: Path, name: str, says: str) -> None:
    """Not listed, named as unreadable, and one line on Open (as the page's handler raises it)."""
    from lowdim_sd.ui.page import PersonalizeHandlers

    assert list_runs(out) == [GOOD] and unreadable_runs(out) == [name]
    with pytest.raises(LowdimError) as caught:
        read_run(out, name)
    line = str(caught.value)
    assert line.startswith(f"run '{name}' in {out}: its run.json is damaged (") and says in line, line
    assert line.endswith(f"; its files are still in {out / name}")
    with pytest.raises(gr.Error) as shown_on_page:
        PersonalizeHandlers(Studio(StudioConfig(model="tinyfaces", out=out))).open_run(name)
    assert shown_on_page.value.message == line and "unexpected error" not in line


# BJ1: paths out of the run folder ---------------------------------------------------------------------------------

def set_download(label: str, file: str) -> Callable[[dict], None]:
    return lambda record: record["downloads"].__setitem__(label, file)


def set_gallery(file: str) -> Callable[[dict], None]:
    return lambda record: record["gallery"][0].__setitem__("file", file)


@pytest.mark.parametrize(("edit", "says"), [
    (set_download("a", "../../secret.txt"), "'a'"),  # a label lowdim never writes
    (set_download("notes", "preview.png"), "'notes'"),  # an unknown label, even for a file of the run
    (set_download("preview", "../../secret.txt"), "'../../secret.txt'"),
    (set_download(ADAPTER_LABEL, "downloads/../../../secret.txt"), "'downloads/../../../secret.txt'"),
    (set_gallery("../../secret.txt"), "'../../secret.txt'"),
    (set_gallery("photo.png"), "'photo.png'"),  # a file of the run, but no gallery picture
    (set_gallery("gallery/00.png/"), "'gallery/00.png/'"),
    (set_gallery(""), "''"),
    (set_download("preview", "downloads"), "'downloads'"),  # a folder
    (set_download("preview", "missing.png"), "'missing.png'"),
], ids=["unknown-label-out", "unknown-label", "dotdot", "dotdot-in-downloads", "gallery-dotdot", "gallery-other-file",
        "gallery-trailing-slash", "gallery-empty", "a-folder", "missing"])
def test_a_path_out_of_the_run_folder_or_not_one_lowdim_writes_is_a_damaged_run(out, edit, says):
    make_run(out, "leak", out / GOOD / "adapter.safetensors", edit)
    assert_left_out(out, "leak", says)


def test_an_absolute_path_is_a_damaged_run(out):
    make_run(out, "leak", out / GOOD / "adapter.safetensors", set_gallery(str(out.parent / "secret.txt")))
    assert_left_out(out, "leak", "secret.txt")
    make_run(out, "leak2", out / GOOD / "adapter.safetensors", set_download("preview", str(out.parent / "secret.txt")))
    assert list_runs(out) == [GOOD] and unreadable_runs(out) == ["leak", "leak2"]


def test_a_symlink_out_of_the_run_folder_is_a_damaged_run(out):
    """The record names the run's own file, but the file (or a folder above it) leads out."""
    folder = make_run(out, "leak", out / GOOD / "adapter.safetensors")
    download = folder / "downloads" / "leak.lowdim.safetensors"
    download.unlink()
    download.symlink_to(out.parent / "secret.txt")
    assert_left_out(out, "leak", "'downloads/leak.lowdim.safetensors'")
    shutil.rmtree(folder)
    folder = make_run(out, "leak", out / GOOD / "adapter.safetensors")
    shutil.rmtree(folder / "gallery")
    (folder / "gallery").symlink_to(out.parent / "elsewhere", target_is_directory=True)
    assert_left_out(out, "leak", "'gallery/00.png'")


def test_a_symlink_within_the_run_folder_is_its_own_file(out):
    folder = make_run(out, "linked", out / GOOD / "adapter.safetensors")
    download = folder / "downloads" / "linked.lowdim.safetensors"
    download.unlink()
    os.symlink("../adapter.safetensors", download)
    record = read_run(out, "linked")
    assert record.adapter == download and list_runs(out) == ["linked", GOOD]


def test_the_good_run_opens_with_only_its_own_files(out):
    from lowdim_sd.ui.page import PersonalizeHandlers

    handlers = PersonalizeHandlers(Studio(StudioConfig(model="tinyfaces", out=out)))
    gallery, files, *_ = handlers.open_run(GOOD)
    folder = (out / GOOD).resolve()
    assert [Path(path).resolve().parent for path, _ in gallery] == [folder / "gallery"]
    assert sorted(Path(path).name for path in files) == [f"{GOOD}.lowdim.safetensors", f"{GOOD}.preview.png"]
    assert all(Path(path).resolve().parent == folder / "downloads" for path in files)


# BJ2: nested too deeply -------------------------------------------------------------------------------------------

def test_a_run_json_nested_too_deeply_is_a_damaged_run_not_a_server_that_cannot_start(out):
    folder = make_run(out, "deep", out / GOOD / "adapter.safetensors")
    (folder / "run.json").write_text("[" * 100_000 + "]" * 100_000)
    assert_left_out(out, "deep", "nested too deeply")
    Studio(StudioConfig(model="tinyfaces", out=out))  # the server starts


# BJ3: a record of the wrong shape ---------------------------------------------------------------------------------

def put(key: str, value: object) -> Callable[[dict], None]:
    return lambda record: record.__setitem__(key, value)


def no_adapter(record: dict) -> None:
    del record["downloads"][ADAPTER_LABEL]


@pytest.mark.parametrize(("edit", "says"), [
    (no_adapter, ADAPTER_LABEL),
    (put("notes", [1, 2]), "notes"),
    (put("notes", None), "notes"),
    (put("notes", "hello"), "notes"),
    (put("stages", [1, 2]), "stages"),
    (put("stages", {"a": "x"}), "'a'"),
    (put("stages", {"a": True}), "'a'"),
    (put("stages", {"a": float("nan")}), "'a'"),
    (put("stages", {"a": float("inf")}), "'a'"),
    (put("stages", {"a": 1e308, "b": 1e308}), "stages"),  # each finite, the total not
    (put("settings", "tinyfaces"), "settings"),
    (put("settings", ["tinyfaces"]), "settings"),
    (put("settings", {"steps": 2}), "model"),
    (put("settings", {"model": 5}), "model"),
    (put("gallery", [{"file": "gallery/00.png", "caption": 5}]), "caption"),
    (put("gallery", [{"file": "gallery/00.png"}]), "caption"),
    (put("gallery", {"file": "gallery/00.png"}), "gallery"),
    (put("gallery", ["gallery/00.png"]), "gallery"),
    (put("downloads", [["lowdim adapter", "adapter.safetensors"]]), "downloads"),
], ids=["no-adapter", "notes-int", "notes-null", "notes-str", "stages-list", "stage-str", "stage-bool", "stage-nan",
        "stage-inf", "stages-overflow", "settings-str", "settings-list", "settings-no-model", "model-int",
        "caption-int", "caption-missing", "gallery-dict", "gallery-of-str", "downloads-list"])
def test_a_record_of_the_wrong_shape_is_a_damaged_run(out, edit, says):
    make_run(out, "odd", out / GOOD / "adapter.safetensors", edit)
    assert_left_out(out, "odd", says)


def test_an_older_record_without_notes_still_opens(out):
    make_run(out, "older", out / GOOD / "adapter.safetensors", lambda record: record.pop("notes"))
    assert read_run(out, "older").notes == [] and list_runs(out) == ["older", GOOD]


def test_stage_names_and_notes_cannot_change_the_page(out, tmp_path):
    from page_html import Shown  # tests/sd, on the path as pytest puts it

    from lowdim_sd.ui.page import stage_table

    stages = {"a | b\n| injected | 9 |": 1.0, "[click](http://example.com)": 2.0, "<img src=x>": 0.5}
    notes = ["see ![x](http://example.com/t.png) and <script>x</script>", "two\n\n# lines `code`"]
    make_run(out, "marked", out / GOOD / "adapter.safetensors",
             lambda record: record.update(stages=stages, notes=notes))
    shown = Shown(stage_table(read_run(out, "marked")))
    assert shown.rows[1:] == [(" ".join(name.splitlines()), f"{s:.1f}") for name, s in stages.items()]  # one a stage
    assert shown.notes == [" ".join(note.splitlines()) for note in notes]  # each on one line, as written
    assert not {"a", "img", "script", "h1"} & set(shown.tags)
    odd = RunRecord("a`b", tmp_path / "a`b", {"model": "tinyfaces"}, {"x": 1.0})
    assert "<strong>Run <code>a`b</code></strong>" in stage_table(odd)  # a backtick in a folder's name is text


@pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing")
def test_a_client_of_a_served_page_gets_the_line_not_the_file(out, capfd):
    """BJ's repro through Gradio's API: the leaking run is refused in one line, and no traceback is printed."""
    gradio_client = pytest.importorskip("gradio_client")
    from ui_requests import refusal, served_page  # tests/sd, on the path as pytest puts it

    make_run(out, "leak2", out / GOOD / "adapter.safetensors",
             lambda record: record["downloads"].update({"preview": "../../secret.txt"}))
    with served_page(out) as (url, studio):
        client = gradio_client.Client(url, verbose=False)
        line = refusal(client, "leak2", api_name="/open_run")
        gallery, files, *_ = client.predict(GOOD, api_name="/open_run")
    assert line == str(pytest.raises(LowdimError, read_run, out, "leak2").value)
    assert "'../../secret.txt'" in line and "Traceback" not in "".join(capfd.readouterr())
    assert sorted(Path(file).name for file in files) == [f"{GOOD}.lowdim.safetensors", f"{GOOD}.preview.png"]
    assert len(gallery) == 1


def test_open_and_draw_never_read_a_run_of_another_folder_named_by_path(out):
    """Review CF3: a client may send any name; a path to a run elsewhere, relative or absolute, is no run here."""
    other = out.parent / "other"
    make_run(other, GOOD, out / GOOD / "adapter.safetensors")
    studio = Studio(StudioConfig(model="tinyfaces", out=out))
    for name in (f"../other/{GOOD}", str((other / GOOD).resolve())):
        with pytest.raises(LowdimError, match="Earlier runs has no run"):
            chosen_run(out, name)
        with pytest.raises(LowdimError, match="no finished run"):
            studio.draw(name, "a [V] face", steps=1, count=1)


def test_a_hidden_folder_being_written_is_no_run_to_open(out):
    """Review CF4: ``.NAME.partial`` holds a run still being written (or a dead server's leftover)."""
    make_run(out, "done", out / GOOD / "adapter.safetensors")
    (out / "done").rename(out / ".done.partial")  # a run's folder as it is just before its rename
    with pytest.raises(LowdimError, match="Earlier runs has no run"):
        chosen_run(out, ".done.partial")
    with pytest.raises(LowdimError, match="no finished run"):
        read_run(out, ".done.partial")
