"""What other runs left in personalize's --out (FIT; review FE 1), and a --full run's warning of adapters left, said
once:

- ``personalize -o OUT`` where a ``train --subjects`` run left NAME.safetensors names it in one warning and leaves
  it, with --overwrite too, as train does (a user's own .safetensors file is no lowdim adapter: not named);
- an earlier ``train --full`` run's model there is refused without --overwrite, in train's line, and with it removed
  once personalize's adapter is written (a stop before leaves the earlier run whole);
- a resumed ``train --full`` run does not repeat the warning its first start gave about the adapters it leaves."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

OTHER = "notes.safetensors"  # a user's own file: no lowdim header


@pytest.fixture
def subjects_run(untrained_adapter, tmp_path) -> Path:
    """A folder as `train --subjects` (alice) left it, with a user's own .safetensors file beside."""
    out = tmp_path / "o"
    out.mkdir()
    shutil.copy(untrained_adapter, out / "alice.safetensors")
    save_file(load_file(str(untrained_adapter)), str(out / OTHER), metadata={"format": "pt"})
    return out


def personalize(capsys, tiny_sd, face, out: Path, *extra) -> tuple[int, str]:
    from cli_train_runs import run  # tests/sd, on the path as pytest puts it

    return run(capsys, "personalize", "-m", tiny_sd, "-i", face, "-o", out, "--steps", 1, "--no-crop",
               "--no-preview", "--device", "cpu", *extra)


def names(out: Path) -> list[str]:
    return sorted(path.name for path in out.iterdir() if path.name != "checkpoints")


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
def test_personalize_names_a_subjects_run_s_adapter_and_leaves_it(subjects_run, tiny_sd, face, capsys, one_thread,
                                                                  overwrite):
    code, text = personalize(capsys, tiny_sd, face, subjects_run, *(["--overwrite"] if overwrite else []))
    assert code == 0, text
    said = " ".join(text.split())
    alice = subjects_run / "alice.safetensors"
    assert f"{alice}: a lowdim adapter this run does not write, left as it was beside this run's adapter" in said, said
    assert OTHER not in said and "removed" not in said, said
    assert names(subjects_run) == ["adapter.safetensors", "alice.safetensors", OTHER]


def test_personalize_refuses_a_full_run_s_model_and_its_overwrite_removes_it_once_the_adapter_is_written(
        tiny_sd, face, tmp_path, capsys, monkeypatch, one_thread):
    from cli_train_runs import one_subject, run  # tests/sd, on the path as pytest puts it

    import lowdim_sd.personalize as personalize_module

    out = tmp_path / "o"
    code, text = run(capsys, "train", "-m", tiny_sd, "-i", one_subject(tmp_path / "refs", side=16), "-o", out,
                     "--no-augment", "--full", "--steps", 1)
    assert code == 0 and names(out) == ["model"], text
    code, text = personalize(capsys, tiny_sd, face, out)
    said = " ".join(text.split())
    assert code == 1 and f"{out / 'model'} (the model of an earlier --full run): this run would leave it beside its " \
                          f"adapter" in said, said
    assert names(out) == ["model"]

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as stopped:  # a stop in the finetune, which writes the adapter
        stopped.setattr(personalize_module, "train", interrupted)
        code, text = personalize(capsys, tiny_sd, face, out, "--overwrite")
    assert code == 130 and names(out) == ["model"] and "removed" not in text, text  # the earlier run whole
    code, text = personalize(capsys, tiny_sd, face, out, "--overwrite")
    assert code == 0, text
    assert names(out) == ["adapter.safetensors"]
    assert f"removed the earlier run's {out / 'model'} (the model of an earlier --full run)" in " ".join(text.split())


def test_a_resumed_full_run_does_not_repeat_the_warning_of_adapters_left(untrained_adapter, tiny_sd, tmp_path,
                                                                         capsys, one_thread):
    from cli_train_runs import one_subject, run  # tests/sd, on the path as pytest puts it

    out = tmp_path / "o"
    out.mkdir()
    shutil.copy(untrained_adapter, out / "other.safetensors")
    command = ["train", "-m", tiny_sd, "-i", one_subject(tmp_path / "refs", side=16), "-o", out, "--no-augment",
               "--full", "--checkpoint-every", 1]
    warning = (f"{out / 'other.safetensors'}: a lowdim adapter this run does not write, left as it was beside this "
               f"run's model")
    code, text = run(capsys, *command, "--steps", 1)
    assert code == 0, text
    assert warning in text, text  # the first start names it
    code, text = run(capsys, *command, "--steps", 2, "--resume")
    assert code == 0, text
    assert "left as it was" not in text, text
    assert (out / "other.safetensors").is_file() and (out / "model").is_dir()


def test_personalize_refused_for_its_model_names_no_adapter_left(subjects_run, face, tmp_path, capsys, one_thread):
    """Review FF 2: a run whose model cannot load wrote no adapter, and says only its own line."""
    empty = tmp_path / "emptym"
    empty.mkdir()
    code, text = personalize(capsys, empty, face, subjects_run)
    assert code == 1 and str(empty) in text, text
    assert "left as" not in text, text
