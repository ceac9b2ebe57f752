"""``lowdim show`` on a hypernetwork file or a weight folder holding a stranger's 100 KB text (a model name, a layer
set, a training prompt): each row is one bounded line with its length, ``--json`` keeps the text, and the ``use
it:`` line stays a command a user can copy, with a placeholder where the text cannot be shown as it is."""

from __future__ import annotations

import json
import shlex

import pytest
from safetensors_edit import rewrite

from lowdim_cli.main import main
from lowdim_sd.file_info import describe

pytestmark = pytest.mark.usefixtures("one_thread")

HUGE = 100_000
LONG = "x" * HUGE


def shown_briefly(path, capsys) -> dict:
    """The table is short; --json's fields, whole."""
    assert main(["show", str(path)]) == 0
    assert len(capsys.readouterr().out) < 5_000
    assert main(["show", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)["fields"]


def assert_cut(text: str) -> None:
    assert len(text) <= 200 and f"({HUGE:,} characters)" in text, text[:300]


def test_a_huge_model_name_in_a_hypernetwork_is_cut_and_a_placeholder_in_the_use_line(make_hypernet, capsys):
    path = rewrite(make_hypernet(1), model=LONG)  # a name past the file system's limit: no lookup of it fails
    info = describe(path)
    assert_cut(dict(info.rows)["for model"])
    words = shlex.split(info.use)
    assert words[:4] == ["lowdim", "personalize", "-m", "MODEL"] and len(info.use) < 400
    assert shown_briefly(path, capsys)["for_model"] == LONG


@pytest.mark.parametrize("field", ["layer_set", "space_config"])
def test_a_huge_layer_set_or_space_config_in_a_hypernetwork_is_cut(make_hypernet, capsys, field):
    path = make_hypernet(1)
    value = LONG if field == "layer_set" else json.dumps({"a": 100, "b": 50, "init": LONG}, separators=(",", ":"))
    rewrite(path, **{field: value})
    info = describe(path)
    predicts = dict(info.rows)["predicts"]
    assert len(predicts) <= 400 and "characters)" in predicts
    assert len(info.use) < 400
    fields = shown_briefly(path, capsys)
    assert (fields["predicts"]["layer_set"] if field == "layer_set" else fields["predicts"]["config"]["init"]) == LONG


def test_a_huge_training_text_and_encoder_name_in_a_hypernetwork_are_cut(make_hypernet, capsys):
    path = make_hypernet(1)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        meta = handle.metadata()
    hyper = json.loads(meta["hyper_config"])
    hyper.pop("encoder_config")  # an encoder named by its hub id alone: the name is what the row shows
    extra = {**json.loads(meta.get("extra") or "{}"), "prompt": LONG}
    rewrite(path, hyper_config=json.dumps(hyper), encoder=LONG, encoder_config="null", extra=json.dumps(extra))
    rows = dict(describe(path).rows)
    assert_cut(rows["training: prompt"])
    assert len(rows["image encoder"]) <= 250 and f"({HUGE:,} characters)" in rows["image encoder"]
    fields = shown_briefly(path, capsys)
    assert fields["training"]["prompt"] == LONG and LONG in fields["image_encoder"]


def test_huge_texts_in_a_weight_index_are_cut_and_json_keeps_them(weight_folders, tmp_path, capsys):
    folder = weight_folders(tmp_path, "w", 1, seed=1, steps=1)
    index = json.loads((folder / "index.json").read_text())
    index["model"] = LONG
    index["config"] = {**index["config"], "prompt": LONG}
    (folder / "index.json").write_text(json.dumps(index))
    rows = dict(describe(folder).rows)
    assert_cut(rows["model"])
    assert_cut(rows["training: prompt"])
    fields = shown_briefly(folder, capsys)
    assert fields["model"] == LONG and fields["training"]["prompt"] == LONG


def test_an_empty_weight_folder_with_a_huge_model_and_root_suggests_precompute_with_placeholders(weight_folders,
                                                                                                tmp_path):
    folder = weight_folders(tmp_path, "w", 1, seed=1, steps=1)
    index = json.loads((folder / "index.json").read_text())
    (folder / "index.json").write_text(json.dumps({**index, "identities": [], "model": LONG, "root": LONG}))
    info = describe(folder)
    assert_cut(dict(info.rows)["images from"])
    assert shlex.split(info.use)[:6] == ["lowdim", "precompute", "-m", "MODEL", "-i", "IDENTITIES"]
