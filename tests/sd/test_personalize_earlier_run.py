"""`lowdim personalize --overwrite` over an earlier run's folder: a stop after the new adapter is written leaves
none of the earlier run's preview or exports beside it, and its note says how to go on from the command given."""

from __future__ import annotations

import shlex

import pytest

from lowdim.registry import Entry, get_registry
from lowdim_cli.main import main
from lowdim_sd.generate import with_looks
from lowdim_sd.plugin import SDBackend
from lowdim_sd.train import TrainConfig

LOOKS = " with ginger long hair"


@pytest.fixture
def described(tiny_sd, monkeypatch):
    """A registered model on the tiny pipeline whose describer reads the same looks from every photo."""
    backend = SDBackend("tiny-looks", str(tiny_sd), describe_subject=lambda image: LOOKS)
    monkeypatch.setitem(get_registry().backends, backend.name, Entry(backend.name, backend, "test"))
    return backend.name


def interrupted(*args, **kwargs):
    raise KeyboardInterrupt


STOPS = {"export": "lowdim_sd.export.export_adapter", "preview": "lowdim_sd.personalize.preview_unless_out_of_memory"}


@pytest.mark.parametrize("stopped", ["export", "preview"])
def test_ctrl_c_after_the_adapter_of_an_overwrite_leaves_no_earlier_file_beside_it(described, face, tmp_path,
                                                                                    monkeypatch, capsys, stopped):
    out = tmp_path / "me"
    command = ["personalize", "-m", described, "-i", str(face), "-o", str(out), "--steps", "1", "--no-crop",
               "--preview-steps", "1", "--export", "kohya", "--device", "cpu"]
    assert main(command) == 0
    earlier = {name: (out / name).read_bytes() for name in ("adapter.safetensors", "adapter.kohya.safetensors",
                                                            "preview.png")}
    capsys.readouterr()
    monkeypatch.setattr(STOPS[stopped], interrupted)
    assert main([*command, "--seed", "1", "--overwrite"]) == 130
    said = " ".join(capsys.readouterr().err.split())
    adapter = out / "adapter.safetensors"
    assert f"Interrupted during the {stopped}; the adapter is complete: {adapter}" in said
    assert adapter.read_bytes() != earlier["adapter.safetensors"]  # the new one
    # Neither the earlier run's preview nor its export is left to pass for this adapter's.
    assert not (out / "preview.png").exists()
    export = out / "adapter.kohya.safetensors"
    assert not export.exists() if stopped == "export" else export.read_bytes() != earlier[export.name]
    assert "preview.png" in said and "earlier run" in said
    # The command already had --overwrite: the way to start over is to run it again, not to add it.
    assert "add --overwrite" not in said and "rerun the same command to start over" in said


def test_the_note_of_a_stop_draws_with_the_phrase_and_looks_the_adapter_learned(described, face, tmp_path,
                                                                                 monkeypatch, capsys):
    monkeypatch.setattr(STOPS["preview"], interrupted)
    out = tmp_path / "me"
    assert main(["personalize", "-m", described, "-i", str(face), "-o", str(out), "--steps", "1", "--no-crop",
                 "--device", "cpu"]) == 130
    said = " ".join(capsys.readouterr().err.split())
    prompt = shlex.quote(with_looks(TrainConfig.prompt, LOOKS))  # 'a [V] face with ginger long hair'
    assert f"lowdim generate -m {described} -a {out / 'adapter.safetensors'} -p {prompt}`" in said
    assert "add --overwrite to the same command to start over" in said  # this time it was not given
    assert "earlier run" not in said


def test_a_run_stopped_before_its_adapter_keeps_the_earlier_runs_files_together(described, face, tmp_path,
                                                                                 monkeypatch, capsys):
    import lowdim_sd.personalize as personalize_module

    out = tmp_path / "me"
    command = ["personalize", "-m", described, "-i", str(face), "-o", str(out), "--steps", "1", "--no-crop",
               "--preview-steps", "1", "--device", "cpu"]
    assert main(command) == 0
    earlier = {path.name: path.read_bytes() for path in out.iterdir()}
    monkeypatch.setattr(personalize_module, "train", interrupted)
    assert main([*command, "--overwrite"]) == 130
    assert {path.name: path.read_bytes() for path in out.iterdir()} == earlier


def test_an_overwrite_removes_the_earlier_runs_files_it_does_not_rewrite_and_says_so(described, face, tmp_path,
                                                                                    monkeypatch, capsys):
    """A preview under --no-preview, an export in a format not asked for this time: each showed another adapter."""
    out = tmp_path / "me"
    command = ["personalize", "-m", described, "-i", str(face), "-o", str(out), "--steps", "1", "--no-crop",
               "--device", "cpu"]
    assert main([*command, "--export", "diffusers", "--preview-steps", "1"]) == 0
    capsys.readouterr()
    with monkeypatch.context() as stopped:
        stopped.setattr(STOPS["export"], interrupted)
        assert main([*command, "--export", "kohya", "--no-preview", "--overwrite"]) == 130
    said = " ".join(capsys.readouterr().err.split())
    removed = f"{out / 'adapter.diffusers.safetensors'}, {out / 'preview.png'}"
    missing = out / "adapter.kohya.safetensors"
    assert f"not written: {missing}; the earlier run's {removed} removed, being of another adapter" in said
    assert sorted(path.name for path in out.iterdir()) == ["adapter.safetensors"]
    assert main([*command, "--export", "diffusers"]) == 1  # no --overwrite: refused, nothing touched
    assert main([*command, "--no-preview", "--overwrite"]) == 0  # the stopped run above left no preview
    (out / "preview.png").write_bytes(b"an earlier run's preview")
    (out / "adapter.kohya.safetensors").write_bytes(b"an earlier run's export")
    capsys.readouterr()
    assert main([*command, "--no-preview", "--overwrite"]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert f"removed the earlier run's {out / 'adapter.kohya.safetensors'}, {out / 'preview.png'}, of another " \
           f"adapter" in said
    assert sorted(path.name for path in out.iterdir()) == ["adapter.safetensors"]


def test_without_overwrite_an_earlier_file_this_run_does_not_write_is_kept_and_named(described, face, tmp_path,
                                                                                     capsys):
    out = tmp_path / "me"
    out.mkdir()
    (out / "preview.png").write_bytes(b"left by a run whose adapter was since deleted")
    assert main(["personalize", "-m", described, "-i", str(face), "-o", str(out), "--steps", "1", "--no-crop",
                 "--no-preview", "--device", "cpu"]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert f"{out / 'preview.png'} is from an earlier run, not of this adapter" in said
    assert (out / "preview.png").read_bytes() == b"left by a run whose adapter was since deleted"
