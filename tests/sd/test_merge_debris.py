"""A `lowdim merge` killed while it writes (kill -9, the OOM killer) leaves its half-written model only in hidden
places a later merge to the same place recognises, removes and names; safetensors' own temp file (0.8 writes one
beside the file it is asked for) is among them. A Ctrl-C right after the staging folder is made leaves nothing
(review A2, A3)."""

from __future__ import annotations

import json
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

# Merges whose first safetensors write is killed with SIGKILL (killed_saves), each its own process: one process
# imports what a merge imports once, then forks a child per merge (argv, stderr file), and prints their exit codes.
KILLED_MERGES = killed_at_the_first_save("""
    import json
    import diffusers, transformers
    from lowdim_cli.main import main
    codes = []
    for argv, err in json.loads(sys.argv[1]):
        child = os.fork()
        if child == 0:
            os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
            try:
                main(argv)
            finally:
                sys.stderr.flush()
                os._exit(0)
        codes.append(os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]))
    print(json.dumps(codes))
""", b"half of a model")
FORMATS = [("single-file", "m.safetensors"), ("diffusers", "m")]
# Decoys a later merge must leave: safetensors-like but not in lowdim's place; lowdim-like but holding what lowdim
# never writes.
OTHERS = (".tmpAbCd12", ".{name}.notes123.tmp")


@pytest.fixture(scope="module")
def adapter(untrained_adapter) -> Path:
    return untrained_adapter


def _merge_args(tiny_sd, adapter, out: Path, fmt: str) -> list[str]:
    return ["merge", "-m", str(tiny_sd), "-a", str(adapter), "-o", str(out), "--format", fmt]


def _hidden(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.startswith("."))


@pytest.fixture(scope="module")
def killed(tiny_sd, adapter, tmp_path_factory) -> dict[str, tuple[Path, int, str]]:
    """Per format: a folder with the decoys where a merge was killed at its first write, its exit code, stderr."""
    runs = {}
    for fmt, name in FORMATS:
        folder = tmp_path_factory.mktemp(f"killed-{fmt}") / "models"
        folder.mkdir()
        (folder / OTHERS[0]).write_bytes(b"another program's temp")
        (folder / OTHERS[1].format(name=name)).mkdir()
        (folder / OTHERS[1].format(name=name) / "notes.txt").write_text("mine")
        runs[fmt] = (folder, _merge_args(tiny_sd, adapter, folder / name, fmt), folder.parent / "merge.err")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", KILLED_MERGES,
                           json.dumps([(argv, str(err)) for _, argv, err in runs.values()])],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    codes = json.loads(done.stdout)
    return {fmt: (folder, code, err.read_text()) for (fmt, (folder, _, err)), code in zip(runs.items(), codes,
                                                                                           strict=True)}


@pytest.mark.parametrize(("fmt", "name"), FORMATS)
def test_a_later_merge_removes_what_a_killed_merge_left_and_says_so(tiny_sd, adapter, killed, capsys, fmt, name):
    folder, code, stderr = killed[fmt]
    others = sorted(other.format(name=name) for other in OTHERS)
    assert code == -9, stderr
    left = [entry for entry in _hidden(folder) if entry not in others]
    assert left and not (folder / name).exists()
    assert not any(entry.startswith(".tmp") for entry in left)  # safetensors' temp went into lowdim's place

    assert main(_merge_args(tiny_sd, adapter, folder / name, fmt)) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert (folder / name).exists() and _hidden(folder) == others
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
