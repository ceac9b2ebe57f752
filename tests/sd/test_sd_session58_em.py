"""Review EM 1, 2, 4 and 5:

1. eval resolves each file once, however many images share how many references (it resolved every reference 4
   times per image: minutes before the first metric on a large folder).
2. A reference that is any of the generated pictures being scored (`-r` the folder scored, or another listed image)
   is left out of every image's references, with a note; `lowdim eval gen -r gen` is refused in one line.
4. An export's -o that is a symbolic link is refused in one line when the file it leads to has no .safetensors
   name, or lies in a folder that is not there (which is not made: a store moved or not mounted).
5. The UI page reads the session kept for a reload only on a real reload, not in a duplicated tab.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch import nn

import lowdim
from lowdim_cli.main import main
from lowdim_sd.eval.folder import load_eval_set
from lowdim_sd.eval.prompts_file import EvalFolderError
from lowdim_sd.export import ExportError, export_adapter

pytestmark = pytest.mark.filterwarnings("ignore:.*ComfyUI reads only the kohya format")  # export's own warning


def _noise(seed: int, size: int = 24) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def _generated(folder: Path, count: int, own: dict[int, list[str]] | None = None) -> Path:
    """A folder as `lowdim generate` leaves it (``count`` pictures, prompts.json, its grid); ``own``: an image's own
    references in the prompts file, by index."""
    folder.mkdir(parents=True)
    entries = []
    for index in range(count):
        _noise(index).save(folder / f"{index:03d}.png")
        entry = {"image": f"{index:03d}.png", "prompt": "a photo of a [V] face", "seed": index}
        entries.append({**entry, "references": (own or {})[index]} if index in (own or {}) else entry)
    _noise(99, 48).save(folder / "grid.png")
    (folder / "prompts.json").write_text(json.dumps({"images": entries, "settings": {"token": "sks"}}))
    return folder


def _photos(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True)
    for index in range(count):
        _noise(100 + index).save(folder / f"id-{index}.png")
    return folder


def _loaded(folder: Path, references: list[Path]) -> tuple[list[list[str]], list[str]]:
    """Each sample's references by file name, and the notes said."""
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        data = load_eval_set(folder, references)
    return [[Path(source).name for source in sources] for sources in data.references], [str(w.message) for w in said]


# -- 1. each file resolved once -----------------------------------------------------------------------------------

@pytest.mark.parametrize("images, photos", [(12, 6), (40, 15)])
def test_eval_resolves_a_number_of_paths_that_grows_with_images_plus_references_not_their_product(
        tmp_path, monkeypatch, images, photos):
    generated = _generated(tmp_path / "gen", images)
    refs = _photos(tmp_path / "a" / "b" / "c" / "refs", photos)
    calls = []
    resolve = pathlib.Path.resolve

    def counted(self, *args, **kwargs):
        calls.append(self)
        return resolve(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "resolve", counted)
    chosen, _ = _loaded(generated, [refs])
    assert chosen == [sorted(f"id-{index}.png" for index in range(photos))] * images
    assert len(calls) <= 4 * (images + photos), len(calls)  # was 4 x images x photos


# -- 2. no generated picture being scored is a reference --------------------------------------------------------

def test_another_listed_image_given_as_a_reference_is_left_out_of_every_images_with_a_note(tmp_path):
    generated = _generated(tmp_path / "gen", 3)
    photos = _photos(tmp_path / "ids", 1)
    chosen, said = _loaded(generated, [generated / "001.png", photos / "id-0.png"])
    assert chosen == [["id-0.png"]] * 3  # 000.png and 002.png were compared with 001.png
    [note] = [text for text in said if "being scored (e.g. " in text]
    assert note.startswith("1 reference is a generated picture being scored (e.g. ") and "001.png" in note


def test_an_images_own_references_naming_only_other_listed_images_are_refused_naming_them(tmp_path):
    generated = _generated(tmp_path / "gen", 3, own={0: ["001.png", "002.png"]})
    with pytest.raises(EvalFolderError) as refused:
        load_eval_set(generated, [])
    said = str(refused.value)
    assert said.startswith("the references of 000.png (its own references in prompts.json) are only generated "
                           "pictures being scored (") and "001.png" in said and "002.png" in said


def test_eval_of_a_folder_against_itself_is_refused_in_one_line(tmp_path, capsys):
    pytest.importorskip("lowdim_tinyfaces")
    generated = _generated(tmp_path / "gen", 3)
    capsys.readouterr()
    code = main(["eval", str(generated), "-r", str(generated), "--metrics", "tinyfaces-image", "--device", "cpu",
                 "--no-progress", "--out", str(tmp_path / "ev")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    said = " ".join(err.split())
    assert "generated pictures being scored" in said and "000.png" in said and "grid.png" in said
    assert "give the photo(s) of the subject" in said and not (tmp_path / "ev").exists()


# -- 4. an -o link's file --------------------------------------------------------------------------------------

@pytest.fixture
def source(tmp_path) -> Path:
    model = nn.ModuleDict({"unet": nn.ModuleDict({"time_embedding": nn.ModuleDict({"linear_1": nn.Linear(4, 4)})})})
    lowdim.inject(model, lowdim.get_space("lora", rank=2), ["unet.time_embedding.linear_1"])
    return lowdim.save_adapter(tmp_path / "me.safetensors", model, token="zwx")


def _refused_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err and "wrote" not in captured.out, captured
    return " ".join(lines[0].split())


def test_a_link_to_a_file_without_a_safetensors_name_is_refused_and_nothing_written(source, tmp_path, capsys):
    link = tmp_path / "l1.safetensors"
    link.symlink_to("notes.txt")
    capsys.readouterr()
    assert main(["export", str(source), "-f", "kohya", "-o", str(link)]) == 1
    said = _refused_line(capsys)
    assert str(link) in said and "notes.txt" in said and "not a .safetensors name" in said
    assert not (tmp_path / "notes.txt").exists() and link.is_symlink()
    with pytest.raises(ExportError, match="not a .safetensors name"):
        export_adapter(source, link, "kohya")
    assert not (tmp_path / "notes.txt").exists()


def test_a_link_into_a_folder_that_is_not_there_is_refused_and_the_folder_not_made(source, tmp_path, capsys):
    link = tmp_path / "l2.safetensors"
    link.symlink_to(Path("store") / "x.safetensors")
    capsys.readouterr()
    assert main(["export", str(source), "-f", "kohya", "-o", str(link)]) == 1
    said = _refused_line(capsys)
    assert str(link) in said and "store" in said and "make the folder" in said
    assert not (tmp_path / "store").exists()
    with pytest.raises(ExportError, match="no folder here"):
        export_adapter(source, link, "kohya")
    assert not (tmp_path / "store").exists()


def test_a_link_into_a_folder_that_is_there_is_written_through(source, tmp_path):
    (tmp_path / "store").mkdir()
    link = tmp_path / "l3.safetensors"
    link.symlink_to(Path("store") / "x.safetensors")
    assert export_adapter(source, link, "kohya") == (tmp_path / "store" / "x.safetensors").resolve()
    assert link.is_symlink()


# -- 5. the session kept for a reload, read on a reload only ----------------------------------------------------

@pytest.mark.parametrize("navigation, told", [("reload", "tab-1"), ("navigate", ""), ("back_forward", ""),
                                              (None, "")])
def test_the_page_reads_the_kept_session_only_on_a_reload(navigation, told):
    """A duplicated tab gets a copy of the original's sessionStorage, but its navigation is no reload (Chrome
    restores it as back_forward): it must not claim the original tab's stopped job."""
    pytest.importorskip("gradio", reason="lowdim ui needs the ui extra")
    from lowdim_sd.ui.page import SESSION_BEFORE

    node = shutil.which("node")
    if node is None:
        pytest.skip("no node to run the page's script")
    entries = "[]" if navigation is None else json.dumps([{"type": navigation}])
    script = (f"const sessionStorage = {{ getItem: (key) => key === 'lowdim-ui-session' ? 'tab-1' : null }};\n"
              f"const performance = {{ getEntriesByType: (kind) => kind === 'navigation' ? {entries} : [] }};\n"
              f"console.log(JSON.stringify(({SESSION_BEFORE})()));\n")
    out = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=60, check=True).stdout
    assert json.loads(out) == [told]
