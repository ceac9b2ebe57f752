"""Review EI of `lowdim export`: a folder typed as `.` is one line (it was a ValueError traceback while the default
output name was made from it); a mistyped --format is told first, with the word meant (it came after the output's
"pass --overwrite"); an -o that is a symbolic link is written through, the link kept (a file replaced it and the
store kept the old LoRA); a diffusers-format export handed back says where it loads and names the adapter it came
from; `lowdim show` of an export gives its tensors' dtype."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from test_export_overwrite_kinds import _refused_line  # tests/sd, on the path as pytest puts it
from torch import nn

import lowdim
from lowdim.errors import AdapterFileError
from lowdim_cli.main import main
from lowdim_sd.export import ExportError, export_adapter

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:.*ComfyUI reads only the kohya format")]  # export's own warning


def _adapter(path: Path, rank: int = 2) -> Path:
    model = nn.ModuleDict({"unet": nn.ModuleDict({"time_embedding": nn.ModuleDict({"linear_1": nn.Linear(4, 4)})})})
    lowdim.inject(model, lowdim.get_space("lora", rank=rank), ["unet.time_embedding.linear_1"])
    return lowdim.save_adapter(path, model, token="zwx")


@pytest.fixture
def run_folder(tmp_path) -> Path:
    """A folder of three adapters, as `lowdim export .` finds it."""
    folder = tmp_path / "bad"
    folder.mkdir()
    for name in ("a", "b", "c"):
        _adapter(folder / f"{name}.safetensors")
    return folder


def _format_of(path: Path) -> str:
    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata()["lora_format"]


# -- 1. `lowdim export .` ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("typed", [".", "./", ""], ids=["dot", "dot-slash", "empty"])
def test_export_of_the_current_folder_is_the_folder_line_not_a_traceback(run_folder, capsys, monkeypatch, typed):
    monkeypatch.chdir(run_folder)
    before = sorted(os.listdir(run_folder))
    assert main(["export", typed]) == 1
    line = _refused_line(capsys)
    assert main(["export", "../bad"]) == 1  # the same folder named another way: the line it matches
    other = _refused_line(capsys)
    assert line == other.replace("../bad/", "./", 1).replace("../bad/", ""), (line, other)
    assert line.startswith("Error: ./ is a folder of 3 adapters (a.safetensors, b.safetensors, c.safetensors)")
    assert sorted(os.listdir(run_folder)) == before  # no default-named file made


def test_export_of_the_parent_folder_names_the_adapters_in_it(run_folder, capsys, monkeypatch):
    (run_folder / "sub").mkdir()
    monkeypatch.chdir(run_folder / "sub")
    assert main(["export", ".."]) == 1
    line = _refused_line(capsys)
    assert "is a folder of 3 adapters" in line and "../a.safetensors" in line, line
    assert os.listdir(run_folder / "sub") == []  # not "...diffusers.safetensors" beside it


def test_export_of_the_root_folder_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["export", "/"]) == 1
    assert "is a folder" in _refused_line(capsys)
    assert os.listdir(tmp_path) == []


def test_the_folder_line_comes_before_the_output_checks(run_folder, capsys, monkeypatch):
    monkeypatch.chdir(run_folder)
    (run_folder / "earlier.safetensors").write_text("a note\n")  # an -o that would be refused on its own
    assert main(["export", ".", "-o", "earlier.safetensors"]) == 1
    assert "./ is a folder of 3 adapters" in _refused_line(capsys)


# -- 2. --format first, with the word meant ----------------------------------------------------------------------
@pytest.fixture
def source(tmp_path) -> Path:
    return _adapter(tmp_path / "me.safetensors")


@pytest.mark.parametrize(("typed", "meant"), [("kohay", "kohya"), ("Kohya", "kohya"), ("A1111", "a1111"),
                                              ("peft", "diffusers")])
@pytest.mark.parametrize("at_out", ["earlier-export", "foreign", "free"])
def test_a_mistyped_format_is_told_first_with_the_word_meant(source, tmp_path, capsys, typed, meant, at_out):
    out = tmp_path / "out.safetensors"
    if at_out == "earlier-export":
        export_adapter(source, out, "kohya")
    elif at_out == "foreign":
        _adapter(out)
    before = out.read_bytes() if out.exists() else None
    assert main(["export", str(source), "-f", typed, "-o", str(out)]) == 1
    line = _refused_line(capsys)
    assert line.startswith(f"Error: unknown --format '{typed}'") and line.endswith(f"did you mean {meant}?"), line
    for listed in ("diffusers (", "kohya (a LoRA, for ComfyUI and A1111)", "a1111 (an embedding"):
        assert listed in line, line
    assert (out.read_bytes() if out.exists() else None) == before


def test_a_mistyped_save_dtype_is_told_before_the_output_checks(source, tmp_path, capsys):
    out = export_adapter(source, tmp_path / "out.safetensors", "kohya")
    assert main(["export", str(source), "--save-dtype", "float16", "-o", str(out)]) == 1
    line = _refused_line(capsys)
    assert "--save-dtype" in line and "did you mean fp16?" in line and "already exists" not in line, line


def test_export_adapter_checks_the_format_before_any_file(tmp_path):
    taken = _adapter(tmp_path / "taken.safetensors")  # an -o refused as not an earlier export
    with pytest.raises(ExportError, match=r"unknown export format 'Kohya'.*did you mean kohya\?"):
        export_adapter(tmp_path / "missing.safetensors", taken, "Kohya")


def test_a1111_for_a_lora_names_the_lora_formats(source, tmp_path, capsys):
    assert main(["export", str(source), "-f", "a1111", "-o", str(tmp_path / "x.safetensors")]) == 1
    line = _refused_line(capsys)
    assert "a LoRA exports as diffusers or kohya, not 'a1111'" in line and "--format kohya" in line, line
    assert not (tmp_path / "x.safetensors").exists()


# -- 3. an -o that is a symbolic link ----------------------------------------------------------------------------
@pytest.fixture
def linked(source, tmp_path) -> tuple[Path, Path]:
    """A ComfyUI loras folder whose entry links into a shared store holding an earlier kohya export."""
    store, loras = tmp_path / "store", tmp_path / "loras"
    store.mkdir()
    loras.mkdir()
    real = export_adapter(source, store / "real.safetensors", "kohya")
    link = loras / "me.safetensors"
    link.symlink_to(Path("..") / "store" / "real.safetensors")
    return link, real


def test_overwrite_through_a_link_replaces_the_file_it_leads_to_and_keeps_the_link(source, linked, capsys):
    link, real = linked
    assert main(["export", str(source), "-f", "diffusers", "-o", str(link), "--overwrite"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert link.is_symlink() and os.readlink(link) == os.path.join("..", "store", "real.safetensors")
    assert _format_of(real) == "diffusers"  # the store's file is the new export
    assert f"through the link {link}" in said and str(real.resolve()) in said, said
    assert sorted(os.listdir(link.parent)) == ["me.safetensors"]  # no temp left on either side
    assert sorted(os.listdir(real.parent)) == ["real.safetensors"]


def test_a_link_to_an_earlier_export_without_overwrite_is_refused_and_kept(source, linked, capsys):
    link, real = linked
    before = real.read_bytes()
    assert main(["export", str(source), "-f", "diffusers", "-o", str(link)]) == 1
    assert "already exists; pass --overwrite" in _refused_line(capsys)
    assert link.is_symlink() and real.read_bytes() == before


def test_a_link_to_what_export_did_not_write_is_refused_with_overwrite(source, tmp_path, capsys):
    adapter = _adapter(tmp_path / "trained.safetensors", rank=1)
    before = adapter.read_bytes()
    link = tmp_path / "link.safetensors"
    link.symlink_to(adapter.name)
    assert main(["export", str(source), "-o", str(link), "--overwrite"]) == 1
    assert "not an earlier export (a lowdim adapter)" in _refused_line(capsys)
    assert link.is_symlink() and adapter.read_bytes() == before


def test_a_link_to_nothing_yet_makes_the_file_it_names(source, tmp_path):
    link = tmp_path / "link.safetensors"
    link.symlink_to("made.safetensors")
    written = export_adapter(source, link, "kohya", overwrite=False)
    assert written == (tmp_path / "made.safetensors").resolve() and link.is_symlink()
    assert _format_of(link) == "kohya"


def test_a_link_loop_at_out_is_one_line(source, tmp_path, capsys):
    (tmp_path / "one.safetensors").symlink_to("two.safetensors")
    (tmp_path / "two.safetensors").symlink_to("one.safetensors")
    assert main(["export", str(source), "-o", str(tmp_path / "one.safetensors"), "--overwrite"]) == 1
    assert "loop" in _refused_line(capsys)


# -- 4. an export handed back as an adapter ----------------------------------------------------------------------
def test_a_diffusers_export_handed_back_says_diffusers_and_names_its_adapter(source, tmp_path, capsys):
    export = export_adapter(source, tmp_path / "d16.safetensors", "diffusers")
    assert main(["export", str(export)]) == 1
    line = _refused_line(capsys)
    assert "use it in diffusers (pipe.load_lora_weights); for ComfyUI or A1111 export its adapter with --format " \
           "kohya" in line, line
    assert "A1111 or ComfyUI" not in line and "'me.safetensors'" in line and "makes LoRAs" not in line, line
    with pytest.raises(AdapterFileError, match=r"export_adapter\(fmt='kohya'\).*'me\.safetensors'"):
        lowdim.read_adapter(export)  # from Python, in Python's words


def test_generate_with_a_diffusers_export_is_told_the_adapter_to_pass(source, tmp_path, capsys):
    export = export_adapter(source, tmp_path / "d16.safetensors", "diffusers")
    assert main(["generate", "-m", "tinyfaces", "-a", str(export), "-p", "a zwx face",
                 "-o", str(tmp_path / "images")]) == 1
    line = _refused_line(capsys)
    assert "lowdim reads the adapter file it was exported from, 'me.safetensors'" in line, line
    assert "A1111 or ComfyUI" not in line


def test_a_kohya_export_handed_back_names_its_adapter(source, tmp_path, capsys):
    export = export_adapter(source, tmp_path / "k.safetensors", "kohya")
    assert main(["export", str(export)]) == 1
    line = _refused_line(capsys)
    assert "a kohya LoRA lowdim exported" in line and "A1111 or ComfyUI" in line and "'me.safetensors'" in line


def test_another_tools_diffusers_lora_is_not_sent_to_comfyui(tmp_path, capsys):
    path = tmp_path / "theirs.safetensors"
    save_file({"unet.x.lora_A.weight": torch.zeros(2, 2), "unet.x.lora_B.weight": torch.zeros(2, 2)}, str(path),
              metadata={"format": "pt"})
    assert main(["export", str(path)]) == 1
    line = _refused_line(capsys)
    assert "use it in diffusers (pipe.load_lora_weights); ComfyUI and A1111 read the kohya format" in line, line
    assert "exported from" not in line


# -- 5. show of an export gives its dtype -------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["kohya", "diffusers"])
@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
def test_show_of_an_export_gives_its_tensor_dtype(source, tmp_path, capsys, fmt, dtype):
    from lowdim_sd.file_info import describe

    export = export_adapter(source, tmp_path / f"x.{fmt}.safetensors", fmt, dtype=dtype)
    info = describe(export)
    assert dict(info.rows)["file"] == f"{export.stat().st_size:,} bytes, {dtype}"
    assert main(["show", str(export), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fields"]["file"] == {"bytes": export.stat().st_size, "dtype": dtype}
