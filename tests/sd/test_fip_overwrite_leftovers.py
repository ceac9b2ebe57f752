"""What an earlier run left beside a new run's output (FIP; review FE 1):

- other lowdim adapters in --out (a ``--subjects`` run's NAME.safetensors beside an adapter run, an adapter run's
  adapter.safetensors beside a ``--subjects`` run) are named in one warning as the run starts and left as they are,
  with --overwrite too: lowdim cannot tell them from adapters a user keeps there. A user's other .safetensors file
  is no lowdim adapter and is not named; the adapter --init starts from is the run's input, not named either;
- an --overwrite run (--full or an adapter's) into personalize's folder removes its preview.png with the adapter
  it removes or replaces (a preview beside an adapter personalize did not write stays)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file

OTHER = "notes.safetensors"  # a user's own file: no lowdim header


@pytest.fixture
def subjects_run(untrained_adapter, tmp_path) -> Path:
    """A folder as `train --subjects` (alice, bob) left it, with a user's own .safetensors file beside."""
    out = tmp_path / "o"
    out.mkdir()
    for name in ("alice", "bob"):
        shutil.copy(untrained_adapter, out / f"{name}.safetensors")
    save_file(load_file(str(untrained_adapter)), str(out / OTHER), metadata={"format": "pt"})
    return out


def train(capsys, tiny_sd, tmp_path, out: Path, *extra) -> tuple[int, str]:
    from cli_train_runs import one_subject, run  # tests/sd, on the path as pytest puts it

    return run(capsys, "train", "-m", tiny_sd, "-i", one_subject(tmp_path / "refs", side=16), "-o", out,
               "--steps", 1, "--no-augment", *extra)


def names(out: Path) -> list[str]:
    return sorted(path.name for path in out.iterdir() if path.name != "checkpoints")


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
def test_an_adapter_run_names_a_subjects_run_s_adapters_and_leaves_them(subjects_run, tiny_sd, tmp_path, capsys,
                                                                        one_thread, overwrite):
    code, text = train(capsys, tiny_sd, tmp_path, subjects_run, *(["--overwrite"] if overwrite else []))
    assert code == 0, text
    said = " ".join(text.split())
    assert (f"{subjects_run / 'alice.safetensors'}, {subjects_run / 'bob.safetensors'}: lowdim adapters this "
            f"run does not write, left as they were beside this run's adapter") in said, said
    assert OTHER not in said and "removed" not in said, said
    assert names(subjects_run) == ["adapter.safetensors", "alice.safetensors", "bob.safetensors", OTHER]


def test_the_adapter_init_starts_from_is_not_named(subjects_run, tiny_sd, tmp_path, capsys, one_thread):
    start = subjects_run / "alice.safetensors"
    before = start.read_bytes()
    code, text = train(capsys, tiny_sd, tmp_path, subjects_run, "--init", start)
    assert code == 0, text
    said = " ".join(text.split())
    assert f"{subjects_run / 'bob.safetensors'}: a lowdim adapter this run does not write, left as it was" in said, said
    assert str(start) not in said, said
    assert start.read_bytes() == before


def test_a_subjects_run_names_an_adapter_run_s_adapter_and_leaves_it(untrained_adapter, tiny_sd, people, tmp_path,
                                                                     capsys, one_thread):
    from cli_train_runs import run  # tests/sd, on the path as pytest puts it

    out = tmp_path / "o"
    out.mkdir()
    shutil.copy(untrained_adapter, out / "adapter.safetensors")
    code, text = run(capsys, "train", "-m", tiny_sd, "--subjects", people, "-o", out, "--steps", 1, "--no-augment")
    assert code == 0, text
    said = " ".join(text.split())
    assert f"{out / 'adapter.safetensors'}: a lowdim adapter this run does not write, left as it was beside " \
           f"this run's adapters" in said, said
    assert names(out) == ["adapter.safetensors", *[f"person{number}.safetensors" for number in range(3)]]


def made_by_personalize(adapter: Path, to: Path) -> Path:
    """``adapter`` with personalize's recipe in its header, as personalize writes it."""
    with safe_open(str(adapter), "pt") as opened:
        metadata = dict(opened.metadata())
    metadata["extra"] = json.dumps({"made_by": "lowdim personalize", "image": "face.png"})
    save_file(load_file(str(adapter)), str(to), metadata=metadata)
    return to


@pytest.mark.parametrize("full, personalized", [(True, True), (False, True), (True, False)],
                         ids=["full over personalize's", "adapter over personalize's", "full over a train run's"])
def test_an_overwrite_removes_personalize_s_preview_with_its_adapter(full, personalized, untrained_adapter, tiny_sd,
                                                                     tmp_path, capsys, one_thread):
    out = tmp_path / "o"
    out.mkdir()
    if personalized:
        made_by_personalize(untrained_adapter, out / "adapter.safetensors")
    else:  # a preview.png beside it is no run's of lowdim: the user's, kept
        shutil.copy(untrained_adapter, out / "adapter.safetensors")
    (out / "preview.png").write_bytes(b"a grid")
    code, text = train(capsys, tiny_sd, tmp_path, out, *(["--full"] if full else []), "--overwrite")
    assert code == 0, text
    written = "model" if full else "adapter.safetensors"
    assert names(out) == sorted([written, *([] if personalized else ["preview.png"])])
    assert (str(out / "preview.png") in text) == personalized, text


def test_a_run_refused_for_its_model_names_no_adapter_left(subjects_run, tiny_sd, tmp_path, capsys, one_thread):
    """Review FF 2: the warning speaks of "this run's adapter"; a run whose model cannot load wrote none, and says
    only its own line."""
    empty = tmp_path / "emptym"
    empty.mkdir()
    code, text = train(capsys, empty, tmp_path, subjects_run)
    assert code == 1 and str(empty) in text, text
    assert "left as" not in text, text
