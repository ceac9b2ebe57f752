"""`lowdim bench speed`'s model folder, when its marker (OUT/model/lowdim-speed-model.json) or the folder itself is
no file or folder it could write (FBJ 3): one line naming it and what to do, exit 1, before the model is built,
never the IsADirectoryError of writing the marker after a build."""

from __future__ import annotations

import os

import pytest

from lowdim_cli.main import main
from lowdim_sd.bench import speed_setup
from lowdim_sd.bench.speed import Store
from lowdim_sd.bench.speed_report import labels
from lowdim_sd.bench.speed_setup import READY, SCALES, resolve_settings
from lowdim_sd.bench.speed_timing import record


@pytest.fixture
def speed_out(tmp_path, monkeypatch):
    """An OUT as `bench speed --quick --device cpu --only merge` leaves it (a resume with --only load has a task to
    run), where building the model fails the test."""
    out = tmp_path / "speed"
    store = Store(out)
    store.claim(resolve_settings(True, "cpu", "auto", None, None), overwrite=False)
    store.save("merge", {**record(labels(SCALES["quick"])["merge"], [0.3]), "argv": None})

    def build(*args, **kwargs):
        raise AssertionError("the model was built")

    monkeypatch.setattr(speed_setup, "build_pipeline", build)
    return out


def resume(out) -> int:
    return main(["bench", "speed", "--quick", "--device", "cpu", "-o", str(out), "--only", "load"])


def one_line_error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("Warning:")]
    assert len(err) == 1, err
    return err[0]


def test_a_marker_that_is_a_folder_is_one_line_naming_it(speed_out, capsys):
    marker = speed_out / "model" / READY
    marker.mkdir(parents=True)
    assert resume(speed_out) == 1
    line = one_line_error(capsys)
    assert line.startswith(f"Error: {marker}: ") and "a folder" in line and "delete it" in line, line


def test_a_marker_that_links_to_nothing_is_one_line_and_nothing_is_written_where_it_points(speed_out, tmp_path,
                                                                                         capsys):
    marker, target = speed_out / "model" / READY, tmp_path / "elsewhere.json"
    marker.parent.mkdir()
    os.symlink(target, marker)
    assert resume(speed_out) == 1
    line = one_line_error(capsys)
    assert line.startswith(f"Error: {marker}: ") and "a link to nothing" in line, line
    assert not target.exists()


def test_a_model_folder_that_is_a_file_is_one_line_naming_it(speed_out, capsys):
    folder = speed_out / "model"
    folder.write_text("not a folder")
    assert resume(speed_out) == 1
    line = one_line_error(capsys)
    assert line.startswith(f"Error: {folder}: ") and "not a folder" in line, line
    assert folder.read_text() == "not a folder"


def test_the_marker_is_written_after_the_weights_are_on_the_disk(tmp_path, monkeypatch):
    """A power cut must not leave a marker vouching for weights still in the OS's cache: they are flushed first,
    and the marker itself is written whole or not at all."""
    events = []

    class Pipe:
        def save_pretrained(self, folder, safe_serialization):
            os.makedirs(folder, exist_ok=True)
            (folder / "model_index.json").write_text("{}")
            events.append("saved")

    monkeypatch.setattr(speed_setup, "build_pipeline", lambda scale: Pipe())
    monkeypatch.setattr(speed_setup, "flush_tree_to_disk", lambda folder: events.append(("flushed", folder.name)))
    real_write = speed_setup.atomic_write
    monkeypatch.setattr(speed_setup, "atomic_write",
                        lambda path, write: events.append(("marker", path.name)) or real_write(path, write))
    folder = speed_setup.saved_model(tmp_path / "model", SCALES["quick"])
    assert events == ["saved", ("flushed", "model"), ("marker", READY)]
    assert (folder / READY).is_file()
