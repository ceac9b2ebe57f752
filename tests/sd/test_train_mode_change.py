"""`lowdim train` into a folder an earlier run of another mode wrote: a `--full` run where an adapter (and its
`lowdim export` file) lies, an adapter run where a `--full` run's model/ lies. Without --overwrite the run is refused
in one line naming what is there; with it the earlier run's outputs go (lowdim's own only) and the run says so, so no
folder holds two runs' outputs and a script reading OUT/adapter.safetensors never picks up a stale file. And
`lowdim show OUT` of a finished --full run shows its model, as `lowdim show OUT/adapter.safetensors`'s folder does."""

from __future__ import annotations

import shutil

import pytest
from cli_train_runs import interrupt_at, one_subject, run  # tests/sd, on the path as pytest puts it

from lowdim.errors import LowdimError
from lowdim_sd.train import TrainConfig
from lowdim_sd.workflows import TrainJob, run_train

pytestmark = pytest.mark.usefixtures("one_thread")

EXPORT = "adapter.diffusers.safetensors"


@pytest.fixture(scope="module")
def earlier(tiny_sd, tmp_path_factory):
    """Two finished runs to copy: 'ti' (a Textual Inversion adapter and its diffusers export) and 'full' (a --full
    run's model/)."""
    from lowdim_sd.export import export_adapter

    folder = tmp_path_factory.mktemp("earlier")
    refs = one_subject(folder / "refs", side=16)
    config = TrainConfig(steps=1, augment=False)
    ti = run_train(TrainJob(model=str(tiny_sd), images=[refs], space="ti", out=folder / "ti", config=config),
                   progress=False).outputs[0]
    export_adapter(ti, ti.parent / EXPORT, "diffusers")
    run_train(TrainJob(model=str(tiny_sd), images=[refs], full=True, out=folder / "full", config=config),
              progress=False)
    return folder


def copied(earlier, name: str, tmp_path):
    return shutil.copytree(earlier / name, tmp_path / name)


def train(tiny_sd, earlier, out, *extra) -> tuple:
    return ("train", "-m", tiny_sd, "-i", earlier / "refs", "-o", out, "--steps", 1, "--no-augment", *extra)


def names(folder) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_a_full_run_into_an_adapter_runs_folder_is_refused_naming_the_adapter(tiny_sd, earlier, tmp_path, capsys):
    out = copied(earlier, "ti", tmp_path)
    before = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}
    code, text = run(capsys, *train(tiny_sd, earlier, out, "--full"))
    assert code == 1 and text.count("Error:") == 1 and "Traceback" not in text, text
    assert str(out / "adapter.safetensors") in text and "--overwrite" in text, text
    assert "model" not in names(out)
    assert {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()} == before


def test_a_full_overwrite_removes_the_earlier_adapter_and_its_export_and_says_so(tiny_sd, earlier, tmp_path,
                                                                                  capsys):
    out = copied(earlier, "ti", tmp_path)
    (out / "notes.txt").write_text("mine")  # a file lowdim did not write stays
    code, text = run(capsys, *train(tiny_sd, earlier, out, "--full", "--overwrite"))
    assert code == 0, text
    assert names(out) == ["model", "notes.txt"]
    assert "removed" in text and str(out / "adapter.safetensors") in text and str(out / EXPORT) in text, text
    code, text = run(capsys, "show", out)  # the folder shows the new model, not a stale adapter
    assert code == 0 and f"{out / 'model'}: a whole model lowdim train --full wrote" in text, text


def test_an_adapter_run_into_a_full_runs_folder_is_refused_naming_its_model(tiny_sd, earlier, tmp_path, capsys):
    out = copied(earlier, "full", tmp_path)
    code, text = run(capsys, *train(tiny_sd, earlier, out, "--space", "ti"))
    assert code == 1 and text.count("Error:") == 1 and "Traceback" not in text, text
    assert str(out / "model") in text and "--overwrite" in text, text
    assert names(out) == ["model"]


def test_an_adapter_overwrite_removes_the_earlier_model_and_says_so(tiny_sd, earlier, tmp_path, capsys):
    out = copied(earlier, "full", tmp_path)
    code, text = run(capsys, *train(tiny_sd, earlier, out, "--space", "ti", "--overwrite"))
    assert code == 0, text
    assert "model" not in names(out) and "adapter.safetensors" in names(out)
    assert "removed" in text and str(out / "model") in text, text


def test_an_adapter_overwrite_removes_the_replaced_adapters_export(tiny_sd, earlier, tmp_path, capsys):
    """The export showed the adapter this run replaces: left, it would pass for the new adapter's."""
    out = copied(earlier, "ti", tmp_path)
    code, text = run(capsys, *train(tiny_sd, earlier, out, "--space", "ti", "--overwrite"))
    assert code == 0, text
    assert EXPORT not in names(out) and str(out / EXPORT) in text, text


def test_files_lowdim_did_not_write_are_never_taken_for_an_earlier_runs(tiny_sd, earlier, tmp_path, capsys):
    """A model/ folder with no record of a --full run, and a foreign file at an adapter's or export's name: neither
    refused nor removed."""
    out = tmp_path / "mine"
    (out / "model").mkdir(parents=True)
    (out / "model" / "weights.bin").write_bytes(b"someone's model")
    (out / EXPORT).write_bytes(b"someone's file")
    code, text = run(capsys, *train(tiny_sd, earlier, out, "--space", "ti"))
    assert code == 0, text
    assert (out / "model" / "weights.bin").read_bytes() == b"someone's model"
    assert (out / EXPORT).read_bytes() == b"someone's file"
    full = tmp_path / "full-mine"
    full.mkdir()
    (full / "adapter.safetensors").write_bytes(b"not a lowdim adapter")
    code, text = run(capsys, *train(tiny_sd, earlier, full, "--full", "--overwrite"))
    assert code == 0, text
    assert (full / "adapter.safetensors").read_bytes() == b"not a lowdim adapter"


def test_python_names_overwrite_true(tiny_sd, earlier, tmp_path):
    out = copied(earlier, "full", tmp_path)
    job = TrainJob(model=str(tiny_sd), images=[earlier / "refs"], space="ti", out=out, config=TrainConfig(steps=1))
    with pytest.raises(LowdimError, match="overwrite=True") as refused:
        run_train(job, progress=False)
    assert str(out / "model") in str(refused.value)


def test_show_of_a_finished_full_runs_folder_shows_its_model(earlier, capsys):
    out = earlier / "full"
    code, text = run(capsys, "show", out)
    assert code == 0, text
    assert f"{out / 'model'}: a whole model lowdim train --full wrote" in text, text
    assert f"use it: lowdim generate -m {out / 'model'}" in text, text


def test_a_stopped_overwrite_keeps_the_earlier_run_whole_and_its_resume_replaces_it(tiny_sd, earlier, tmp_path,
                                                                                   capsys, monkeypatch):
    """The earlier run goes once this one's output is written: a Ctrl-C mid-run leaves the earlier model as it was
    (not a folder with neither run's), and the resumed run, done, removes it as --overwrite asked."""
    out = copied(earlier, "full", tmp_path)
    model = {path.relative_to(out): path.read_bytes() for path in (out / "model").rglob("*") if path.is_file()}
    with monkeypatch.context() as patched:
        interrupt_at(patched, 2)
        code, text = run(capsys, *train(tiny_sd, earlier, out, "--space", "ti", "--overwrite", "--steps", 3,
                                        "--checkpoint-every", 1))
    assert code == 130, text
    assert {path.relative_to(out): path.read_bytes() for path in (out / "model").rglob("*") if path.is_file()} == model
    code, text = run(capsys, *train(tiny_sd, earlier, out, "--space", "ti", "--resume", "--steps", 3,
                                    "--checkpoint-every", 1))
    assert code == 0, text
    assert "model" not in names(out) and "adapter.safetensors" in names(out)
    assert "removed" in text and str(out / "model") in text, text
