"""A `lowdim merge` killed while it writes (kill -9, the OOM killer) leaves its half-written model only in hidden
places a later merge to the same place recognises, removes and names; safetensors' own temp file (0.8 writes one
beside the file it is asked for) is among them. A Ctrl-C right after the staging folder is made leaves nothing
(review A2, A3)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from killed_saves import killed_at_the_first_save  # tests/sd, on the path as pytest puts it

from lowdim_cli.main import main
from lowdim_sd.loading import load_sd
from lowdim_sd.merged_model import save_merged

pytestmark = pytest.mark.usefixtures("one_thread")

# A merge whose first safetensors write is killed with SIGKILL (killed_saves).
KILLED_MERGE = killed_at_the_first_save("""
    from lowdim_cli.main import main
    main(sys.argv[1:])
""", b"half of a model")


@pytest.fixture(scope="module")
def adapter(untrained_adapter) -> Path:
    return untrained_adapter


def _merge_args(tiny_sd, adapter, out: Path, fmt: str) -> list[str]:
    return ["merge", "-m", str(tiny_sd), "-a", str(adapter), "-o", str(out), "--format", fmt]


def _hidden(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.startswith("."))


@pytest.mark.parametrize(("fmt", "name"), [("single-file", "m.safetensors"), ("diffusers", "m")])
def test_a_later_merge_removes_what_a_killed_merge_left_and_says_so(tiny_sd, adapter, tmp_path, capsys, fmt, name):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / ".tmpAbCd12").write_bytes(b"another program's temp")  # safetensors-like, but not in lowdim's place
    (folder / f".{name}.notes123.tmp").mkdir()  # lowdim-like name, but holding what lowdim never writes
    (folder / f".{name}.notes123.tmp" / "notes.txt").write_text("mine")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, "-c", KILLED_MERGE, *_merge_args(tiny_sd, adapter, folder / name, fmt)],
                            env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    left = [entry for entry in _hidden(folder) if entry not in (".tmpAbCd12", f".{name}.notes123.tmp")]
    assert left and not (folder / name).exists()
    assert not any(entry.startswith(".tmp") for entry in left)  # safetensors' temp went into lowdim's place

    assert main(_merge_args(tiny_sd, adapter, folder / name, fmt)) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert (folder / name).exists() and _hidden(folder) == sorted([".tmpAbCd12", f".{name}.notes123.tmp"])
    assert "removed" in err and all(entry in err for entry in left), err
    assert (folder / f".{name}.notes123.tmp" / "notes.txt").read_text() == "mine"


def test_a_ctrl_c_right_after_the_staging_folder_is_made_leaves_nothing(tiny_sd, adapter, tmp_path, monkeypatch):
    """One interrupt, at the first thing done to the fresh hidden folder (a Ctrl-C raises there)."""
    out, interrupts = tmp_path / "m", [KeyboardInterrupt]

    def interrupting(real):
        def call(path, *args, **kwargs):
            name = os.path.basename(os.fspath(path))
            if interrupts and os.path.dirname(os.path.abspath(path)) == str(tmp_path) and name.startswith(".m.") \
                    and os.path.isdir(path):
                raise interrupts.pop()
            return real(path, *args, **kwargs)
        return call

    model = load_sd(str(tiny_sd), device="cpu", dtype="fp32")
    monkeypatch.setattr(os, "chmod", interrupting(os.chmod))
    monkeypatch.setattr(os, "open", interrupting(os.open))
    with pytest.raises(KeyboardInterrupt):
        save_merged(model, [(adapter, 1.0)], out, "diffusers")
    assert not interrupts and os.listdir(tmp_path) == []


def _tree(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("error", [OSError(16, "Device or resource busy"), KeyboardInterrupt("busy")],
                         ids=["busy", "ctrl-c"])
@pytest.mark.parametrize("failing", ["aside", "in"])
def test_a_swap_that_fails_keeps_the_earlier_merge_and_leaves_nothing(tiny_sd, adapter, tmp_path, monkeypatch,
                                                                      failing, error):
    """The rename that moves the earlier merge aside, or the one that puts the new merge in its place, fails (or
    a Ctrl-C arrives there)."""
    out = tmp_path / "m"
    assert main(_merge_args(tiny_sd, adapter, out, "diffusers")) == 0
    before, aside, replace = _tree(tmp_path), [], os.replace

    def failing_replace(source, target):
        if Path(source) == out:
            aside.append(Path(target))
            if failing == "aside":
                raise error
        elif Path(target) == out and failing == "in" and Path(source) not in aside:  # not the putting back
            raise error
        return replace(source, target)

    monkeypatch.setattr("lowdim_sd.merged_model.os.replace", failing_replace)
    with pytest.raises(type(error), match="busy"):
        save_merged(load_sd(str(tiny_sd), device="cpu", dtype="fp32"), [(adapter, 0.5)], out, "diffusers",
                    overwrite=True)
    assert aside and _tree(tmp_path) == before
