"""`lowdim generate` and `lowdim merge` read each --adapter file once: checked on its own before the model
loads (one line naming a bad file), and that reading is what the model is then given."""

from __future__ import annotations

import builtins
import os
import sys
from collections import Counter
from pathlib import Path

import pytest
import safetensors

from lowdim_cli.main import main
from lowdim_sd.loading import load_sd


@pytest.fixture(scope="module")
def adapter_files(lidb_and_ti) -> list[Path]:
    """A LiDB adapter and a one-vector Textual Inversion embedding of the tiny model: both kinds -a loads."""
    return list(lidb_and_ti)


@pytest.fixture
def opened(monkeypatch) -> Counter:
    """(how, resolved path) -> times opened: by safetensors' ``safe_open`` (wherever a module holds it, and for
    modules imported later) or by Python's ``open`` (the sniff of a file's first bytes)."""
    counts: Counter = Counter()
    real_safe_open, real_open = safetensors.safe_open, builtins.open

    def counting_safe_open(path, *args, **kwargs):
        counts["safe_open", Path(path).resolve()] += 1
        return real_safe_open(path, *args, **kwargs)

    def counting_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)):
            counts["open", Path(file).resolve()] += 1
        return real_open(file, *args, **kwargs)

    for module in list(sys.modules.values()):
        if vars(module).get("safe_open") is real_safe_open:  # vars: a lazy module's __getattr__ stays untouched
            monkeypatch.setattr(module, "safe_open", counting_safe_open)
    monkeypatch.setattr(builtins, "open", counting_open)
    return counts


def _assert_read_once(opened: Counter, paths: list[Path]) -> None:
    for path in paths:
        assert opened["safe_open", path.resolve()] == 1, f"{path.name} opened by safetensors more than once"
        assert opened["open", path.resolve()] <= 1, f"{path.name} opened more than once"


def test_generate_reads_each_adapter_file_once(tiny_sd, adapter_files, tmp_path, capsys, one_thread, opened):
    lidb, ti = adapter_files
    # --text-encoder-scale: the check of which layers it acts on reads the files' layers too
    code = main(["generate", "-m", str(tiny_sd), "-a", str(lidb), "-a", f"{ti}:0.5", "-p", "a [V] face",
                 "--steps", "1", "--text-encoder-scale", "0.5", "-o", str(tmp_path / "images")])
    assert code == 0, capsys.readouterr()
    assert (tmp_path / "images" / "grid.png").is_file()
    _assert_read_once(opened, adapter_files)


def test_merge_reads_each_adapter_file_once(tiny_sd, adapter_files, tmp_path, capsys, one_thread, opened):
    lidb, ti = adapter_files
    code = main(["merge", "-m", str(tiny_sd), "-a", str(lidb), "-a", str(ti), "--format", "diffusers",
                 "-o", str(tmp_path / "merged")])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "zwx" in text and "sks" in text  # the tokens, and the example prompt made from the first file read
    _assert_read_once(opened, adapter_files)


def test_save_merged_called_alone_reads_each_adapter_file_once(tiny_sd, adapter_files, tmp_path, one_thread, opened):
    from lowdim_sd.merged_model import save_merged

    model = load_sd(str(tiny_sd), "cpu", "fp32")
    opened.clear()  # the model's own files
    _, tokens = save_merged(model, [(path, 1.0) for path in adapter_files], tmp_path / "merged", "diffusers")
    assert tokens == ["zwx", "sks"]
    _assert_read_once(opened, adapter_files)


def test_an_embedding_refused_for_a_single_file_merge_is_one_line_before_the_model_loads(
        tiny_sd, adapter_files, tmp_path, capsys, monkeypatch):
    import lowdim_sd.loading

    monkeypatch.setattr(lowdim_sd.loading, "load_pipeline", lambda *a, **k: pytest.fail("the model was loaded"))
    code = main(["merge", "-m", str(tiny_sd), "-a", str(adapter_files[1]), "-o", str(tmp_path / "m.safetensors")])
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and "single-file checkpoint cannot hold" in lines[0]
