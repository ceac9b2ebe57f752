"""``lowdim show`` on a registered model whose plugin gives a stranger's text (a 100 KB description, a source path
or hub id holding a newline or an escape code) and on a diffusers folder whose ``model_index.json`` names such a
class: each row is one bounded, escaped line that says the length of what it cut, ``--json`` keeps the text whole,
and a folder's snippet for diffusers stays code a user can copy. A shard's identities are listed as a merged
model's adapters are: the first five and how many more."""

from __future__ import annotations

import json
import types
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import lowdim
from lowdim.hookspecs import hookimpl
from lowdim_cli.main import main
from lowdim_sd.file_info import describe
from lowdim_sd.plugin import SDBackend

pytestmark = pytest.mark.usefixtures("one_thread")

HUGE = "x" * 100_000
CONTROL = "zw\nx\x1b[2J"  # a newline and the escape code that clears the screen
HUGE_CONTROL = "\x1b[31m" + "y" * 100_000  # both: cut, escaped, its length said
TEXTS = {"huge": HUGE, "control": CONTROL, "huge-control": HUGE_CONTROL}
LONGEST_ROW = 400  # a cut row: its head, escaped, its length and a short note


def registered(backend: SDBackend) -> AbstractContextManager[lowdim.Registry]:
    """``backend`` registered by a plugin, as an installed package would."""
    plugin = types.ModuleType("strangers_models")
    plugin.register_backends = hookimpl(lambda register: [register(backend)])
    modules = ["lowdim.spaces.builtin", "lowdim.hyper.builtin", "lowdim_sd.plugin", plugin]
    return lowdim.use_registry(lowdim.Registry.from_plugins(modules))


def pipeline_folder(folder: Path, class_name: str) -> Path:
    """A diffusers folder as far as `show` reads it: its index, naming ``class_name``."""
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": class_name}))
    return folder


def assert_bounded(row: str, text: str) -> None:
    assert row.isprintable(), row[:300]  # escaped: one line, no escape code
    assert len(row) <= LONGEST_ROW, row[:500]
    if len(text) > 1_000:
        assert f"({len(text):,} characters)" in row, row[:500]  # cut, and it says by how much
    else:
        assert ascii(text)[1:-1] in row, row  # shown whole, escaped: '\n', '\x1b'


def shown(target: str, capsys) -> tuple[str, dict]:
    """What `lowdim show TARGET` prints (a short table, no control character) and its --json fields."""
    assert main(["show", target]) == 0
    out = capsys.readouterr().out
    assert len(out) < 5_000 and "\x1b" not in out, out[:300]
    assert main(["show", target, "--json"]) == 0
    return out, json.loads(capsys.readouterr().out)["fields"]


@pytest.mark.parametrize("text", TEXTS.values(), ids=TEXTS.keys())
def test_a_plugin_models_description_is_a_bounded_escaped_row_and_json_keeps_it_whole(tmp_path, monkeypatch,
                                                                                       capsys, text):
    monkeypatch.chdir(tmp_path)  # no file named strange here
    with registered(SDBackend("strange", "", description=text)):
        info = describe(Path("strange"))
        assert_bounded(dict(info.rows)["description"], text)
        assert info.use == "lowdim personalize -m strange -i face.jpg -o me"
        _, fields = shown("strange", capsys)
    assert fields["description"] == text


@pytest.mark.parametrize("text", TEXTS.values(), ids=TEXTS.keys())
def test_a_plugin_models_hub_id_is_bounded_and_json_keeps_it_whole(tmp_path, monkeypatch, capsys, text):
    monkeypatch.chdir(tmp_path)
    with registered(SDBackend("strange", text)):
        rows = dict(describe(Path("strange")).rows)
        assert_bounded(rows["hub id"], text)
        code = rows["in diffusers"]
        assert code.isprintable() and len(code) <= LONGEST_ROW, code[:500]
        _, fields = shown("strange", capsys)
    assert fields["hub_id"] == text and json.dumps(text) in fields["in_diffusers"]


@pytest.mark.parametrize("text", TEXTS.values(), ids=TEXTS.keys())
def test_a_plugin_models_missing_folder_is_bounded_and_still_said_missing(tmp_path, monkeypatch, capsys, text):
    monkeypatch.chdir(tmp_path)
    source = f"/{text}"  # an absolute path: a folder, which a 100 KB name can never be
    with registered(SDBackend("strange", source)):
        row = dict(describe(Path("strange")).rows)["files"]
        assert_bounded(row, source)
        assert row.endswith("(missing: no such folder)"), row[-200:]
        _, fields = shown("strange", capsys)
    assert fields["files"] == f"{source} (missing: no such folder)"


@pytest.mark.parametrize("text", TEXTS.values(), ids=TEXTS.keys())
def test_a_pipeline_folders_class_name_is_a_bounded_escaped_row_and_json_keeps_it_whole(tmp_path, capsys, text):
    folder = pipeline_folder(tmp_path / "pipe", text)
    info = describe(folder)
    assert_bounded(dict(info.rows)["pipeline"], text)
    _, fields = shown(str(folder), capsys)
    assert fields["pipeline"] == text


@pytest.mark.parametrize("text", TEXTS.values(), ids=TEXTS.keys())
def test_a_plugin_models_folder_naming_a_strangers_class_says_diffusers_own_loader(tmp_path, monkeypatch, capsys,
                                                                                  text):
    folder = pipeline_folder(tmp_path / "pipe", text)
    monkeypatch.chdir(tmp_path)
    with registered(SDBackend("strange", str(folder))):
        rows = dict(describe(Path("strange")).rows)
        assert_bounded(rows["pipeline"], text)
        # A class name the table cannot show is no code to copy: DiffusionPipeline picks the class from the index.
        assert rows["in diffusers"] == f"DiffusionPipeline.from_pretrained({json.dumps(str(folder))})"
        _, fields = shown("strange", capsys)
    assert fields["pipeline"] == text


def test_a_plugin_models_short_texts_are_shown_as_they_are(tmp_path, monkeypatch):
    """The bound touches only a stranger's text: a plugin's own reads as before."""
    folder = pipeline_folder(tmp_path / "pipe", "StableDiffusionPipeline")
    monkeypatch.chdir(tmp_path)
    with registered(SDBackend("strange", str(folder), description="a tiny face model",
                              default_hypernet="hyper.safetensors")):
        info = describe(Path("strange"))
    rows = dict(info.rows)
    assert rows["description"] == "a tiny face model" and rows["files"] == str(folder)
    assert rows["pipeline"] == "StableDiffusionPipeline" and rows["default hypernetwork"] == "hyper.safetensors"
    assert rows["in diffusers"] == f"StableDiffusionPipeline.from_pretrained({json.dumps(str(folder))})"
    assert info.as_dict()["fields"]["description"] == "a tiny face model"


@pytest.mark.parametrize("text", TEXTS.values(), ids=TEXTS.keys())
def test_a_plugin_models_default_hypernetwork_is_bounded(tmp_path, monkeypatch, capsys, text):
    monkeypatch.chdir(tmp_path)
    with registered(SDBackend("strange", "", default_hypernet=text)):
        assert_bounded(dict(describe(Path("strange")).rows)["default hypernetwork"], text)
        _, fields = shown("strange", capsys)
    assert fields["default_hypernetwork"] == text


def test_a_shard_of_many_identities_names_the_first_five_and_counts_the_rest(tmp_path, capsys):
    names = [f"id-{number:05d}" for number in range(10_000)]
    path = tmp_path / "shard-00000.safetensors"
    save_file({"x": torch.zeros(2)}, str(path), {"format": "lowdim.weights.shard", "identities": json.dumps(names)})
    row = dict(describe(path).rows)["identities"]
    assert row == "10000: id-00000, id-00001, id-00002, id-00003, id-00004 and 9,995 more", row
    _, fields = shown(str(path), capsys)
    assert fields["identities"] == names
