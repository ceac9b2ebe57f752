"""`lowdim merge --overwrite` replaces an earlier merge and nothing else: never a folder of the user's files, the
base model or a folder holding it, an adapter being merged, nor the current folder. And `lowdim show` on a merge
suggests the prompt merge printed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import lowdim
from lowdim_cli.main import main
from lowdim_sd.loading import load_sd
from lowdim_sd.merged_model import RECORD, RECORD_KEY
from lowdim_sd.modes import resolve_layers

LOOKS = {"prompt": "a photo of a [V] face", "looks": " with ginger long hair"}


@pytest.fixture(scope="module")
def adapter(tiny_sd, tmp_path_factory) -> Path:
    """An adapter with a token and the phrase and looks personalize records."""
    model = load_sd(str(tiny_sd), device="cpu", dtype="fp32")
    view = lowdim.Adapters(model.modules)
    view.add("default", lowdim.get_space("lidb"), resolve_layers(None), seed=0)
    return lowdim.save_adapter(tmp_path_factory.mktemp("adapter") / "me.safetensors", view, "default",
                               token="zwx", extra=LOOKS)


@pytest.fixture
def no_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr("lowdim_sd.loading.load_sd", refuse)


def _tree(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its bytes (None: a folder), to see that nothing changed."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))}


def _merge(model: Path | str, adapter: Path | str, out: Path | str, fmt: str, *flags: str) -> int:
    return main(["merge", "-m", str(model), "-a", str(adapter), "-o", str(out), "--format", fmt, *flags])


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return " ".join(err[0].split())


def _earlier_merge_look(folder: Path) -> None:
    """What marks a folder `lowdim merge --format diffusers` wrote."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text("{}")
    (folder / RECORD).write_text(json.dumps({"base_model": "x", "adapters": [], "tokens": []}))


@pytest.mark.parametrize("fmt", ["diffusers", "single-file"])
def test_overwrite_refuses_what_is_no_earlier_merge_and_keeps_it(tiny_sd, adapter, tmp_path, capsys, no_loading,
                                                                  fmt):
    if fmt == "diffusers":
        victim = tmp_path / "victim"
        victim.mkdir()
        (victim / "notes.txt").write_text("x")
    else:
        victim = tmp_path / "photo.safetensors"
        shutil.copyfile(adapter, victim)  # a .safetensors file, but no merge
    before = _tree(tmp_path)
    assert _merge(tiny_sd, adapter, victim, fmt, "--overwrite") == 1
    line = _one_line(capsys)
    assert str(victim) in line and "not an earlier merge" in line and "pick a new --out" in line
    assert _tree(tmp_path) == before


def test_overwrite_refuses_a_folder_that_holds_the_base_model(tiny_sd, adapter, tmp_path, capsys, no_loading):
    holder = tmp_path / "holder"
    shutil.copytree(tiny_sd, holder / "base")
    _earlier_merge_look(holder)  # even a folder that looks like an earlier merge
    before = _tree(tmp_path)
    assert _merge(holder / "base", adapter, holder, "diffusers", "--overwrite") == 1
    line = _one_line(capsys)
    assert str(holder) in line and "holds the base model" in line
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("fmt", ["single-file", "diffusers"])
def test_overwrite_refuses_an_adapter_being_merged(tiny_sd, adapter, tmp_path, capsys, no_loading, fmt):
    if fmt == "single-file":
        mine = out = tmp_path / "self.safetensors"
        message = "refusing to overwrite the source adapter with its merge"
    else:
        out = tmp_path / "merged"
        _earlier_merge_look(out)
        mine = out / "self.safetensors"
        message = f"holds the adapter {mine} being merged"
    shutil.copyfile(adapter, mine)
    before = _tree(tmp_path)
    assert _merge(tiny_sd, mine, out, fmt, "--overwrite") == 1
    line = _one_line(capsys)
    assert str(out) in line and message in line
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("out, overwrite, merge_look", [
    (".", False, False), (".", True, False), (".", True, True), ("..", True, True), ("./", True, True)])
def test_the_current_folder_or_one_above_it_is_refused_leaving_nothing(tiny_sd, adapter, tmp_path, capsys,
                                                                       monkeypatch, no_loading, out, overwrite,
                                                                       merge_look):
    here = tmp_path / "work" / "here"
    here.mkdir(parents=True)
    if merge_look:
        _earlier_merge_look(here.parent if out == ".." else here)
    shutil.copyfile(adapter, tmp_path / "a.safetensors")
    monkeypatch.chdir(here)
    before = _tree(tmp_path)
    assert _merge(tiny_sd, "../../a.safetensors", out, "diffusers", *(["--overwrite"] * overwrite)) == 1
    line = _one_line(capsys)
    assert line.startswith(f"Error: {Path(out)}:") and "the current folder" in line
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("fmt, name", [("single-file", "m.safetensors"), ("diffusers", "m")])
def test_show_suggests_the_prompt_merge_printed(tiny_sd, adapter, tmp_path, capsys, one_thread, fmt, name):
    from lowdim_sd.file_info import describe

    out = tmp_path / name
    assert _merge(tiny_sd, adapter, out, fmt) == 0
    said = " ".join(capsys.readouterr().out.split())
    prompt = "a photo of a zwx face with ginger long hair"
    assert f"(e.g. '{prompt}')" in said
    assert describe(out).use == f"lowdim generate -m {out} -p '{prompt}'"


def test_show_on_a_merge_recorded_before_prompts_were_suggests_the_token_in_the_default_phrase(
        tiny_sd, adapter, tmp_path, one_thread):
    from lowdim_sd.file_info import describe

    out = tmp_path / "old"
    assert _merge(tiny_sd, adapter, out, "diffusers") == 0
    record = json.loads((out / RECORD).read_text())
    assert {"base_model", "adapters", "tokens"} <= record.keys()  # the keys readers already rely on stay
    (out / RECORD).write_text(json.dumps({key: record[key] for key in ("base_model", "adapters", "tokens")}))
    assert describe(out).use == f"lowdim generate -m {out} -p 'a zwx face'"
    (out / RECORD).write_text(json.dumps({"base_model": "x"}))  # no token recorded at all
    assert describe(out).use == f"lowdim generate -m {out} -p 'a photo of a face'"


def test_overwrite_still_replaces_an_earlier_single_file_merge(tiny_sd, adapter, tmp_path, capsys, one_thread):
    from safetensors import safe_open

    out = tmp_path / "m.safetensors"
    assert _merge(tiny_sd, adapter, out, "single-file") == 0
    with safe_open(str(out), framework="pt") as file:
        assert "prompt" in json.loads(file.metadata()[RECORD_KEY])
    assert _merge(tiny_sd, f"{adapter}:0.5", out, "single-file", "--overwrite") == 0, capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_only_an_earlier_merge_is_offered_overwrite(tiny_sd, adapter, tmp_path, capsys, no_loading):
    earlier = tmp_path / "earlier"
    _earlier_merge_look(earlier)
    assert _merge(tiny_sd, adapter, earlier, "diffusers") == 1
    assert "already exists (an earlier merge); pick a new --out or pass --overwrite" in _one_line(capsys)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    assert _merge(tiny_sd, adapter, other, "diffusers") == 1
    line = _one_line(capsys)
    assert "is not an earlier merge" in line and "pass --overwrite" not in line
