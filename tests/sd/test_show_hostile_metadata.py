"""``lowdim show`` on files and weight folders a stranger edited (review BH): JSON nested past the parser, configs of
the wrong JSON type, a version of Unicode digits; each is one line or a 'problem' row naming the field, never a
traceback or Python's internals. Also: the dtype shown is the tensors' own, and every layer name a built-in
backend has passes the layer-name check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors_edit import rewrite

import lowdim
from lowdim.filecheck import checked_layers
from lowdim.injection.matching import EMBEDDING, LAYER_TYPES
from lowdim.injection.select import candidate_layers
from lowdim_cli.main import main
from lowdim_sd.file_info import describe
from lowdim_sd.loading import load_sd

pytestmark = pytest.mark.usefixtures("one_thread")

DEEP_LIST = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"a":' * 50_000 + "1" + "}" * 50_000


@pytest.fixture
def adapter(tiny_sd, tmp_path):
    model = load_sd(str(tiny_sd))
    lowdim.inject(model.modules, lowdim.get_space("lidb"), ["*attn1.to_q"], seed=3)
    return lowdim.save_adapter(tmp_path / "me.safetensors", model.modules, base_model="tiny-base", token="zwx",
                               extra={"steps": 40})


def shown(path: Path, capsys) -> tuple[int, str]:
    code = main(["show", str(path)])
    captured = capsys.readouterr()
    text = " ".join((captured.out + captured.err).split())
    assert "Traceback" not in text and "RecursionError" not in text, text
    return code, text


def test_a_deeply_nested_layer_list_is_one_line_naming_the_field(adapter, capsys):
    rewrite(adapter, layers=DEEP_LIST)
    code, text = shown(adapter, capsys)
    assert code == 1 and f"{adapter}: the layer list in the metadata ('layers') is corrupted (JSON nested too " \
                          f"deeply)" in text


@pytest.mark.parametrize(("field", "said"), [
    ("space_config", "the space_config in the metadata is corrupted (JSON nested too deeply)"),
    ("scales", "the scales in the metadata are not one finite number per layer"),
], ids=["space_config", "scales"])
def test_deeply_nested_adapter_fields_are_a_problem_row_naming_the_field(adapter, capsys, field, said):
    rewrite(adapter, **{field: DEEP_LIST})
    problem = dict(describe(adapter).rows)["problem"]
    assert said in problem and describe(adapter).use == ""
    assert shown(adapter, capsys)[0] == 0


@pytest.mark.parametrize("extra", [DEEP_OBJECT, "[1,2,3]", "5"], ids=["deep", "list", "number"])
def test_an_extra_that_is_no_object_shows_the_adapter_without_a_recipe(adapter, extra):
    rewrite(adapter, extra=extra)
    info = describe(adapter)  # read_adapter loads such a file: show shows it
    assert not any(name.startswith("recipe: ") for name, _ in info.rows)
    assert info.use.endswith("-p 'a [V] face'")


@pytest.mark.parametrize("config", ["[1,2]", "5"])
def test_a_space_config_that_is_no_object_is_named_in_the_problem_row(adapter, config):
    rewrite(adapter, space_config=config)
    assert "the space_config in the metadata is not a JSON object" in dict(describe(adapter).rows)["problem"]


def test_a_unicode_digit_format_version_is_the_line_for_a_version_no_lowdim_writes(adapter, weight_folders, tmp_path,
                                                                                  capsys):
    rewrite(adapter, format_version="²")
    assert "adapter format version '²', which no lowdim writes" in dict(describe(adapter).rows)["problem"]
    folder = weight_folders(tmp_path, "w", 1, seed=1, steps=1)
    index = json.loads((folder / "index.json").read_text())
    (folder / "index.json").write_text(json.dumps({**index, "format_version": "²"}))
    code, text = shown(folder, capsys)
    assert code == 1 and "weight index format version '²', which no lowdim writes" in text


def test_a_deeply_nested_weight_index_is_one_line(tmp_path, capsys):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "index.json").write_text(DEEP_LIST)
    code, text = shown(tmp_path / "w", capsys)
    assert code == 1 and f"{tmp_path / 'w' / 'index.json'}: unreadable weight index (JSON nested too deeply)" in text


@pytest.mark.parametrize(("field", "value", "said"), [
    ("hyper_config", DEEP_OBJECT, "the metadata field 'hyper_config' is corrupted (JSON nested too deeply)"),
    ("layers", DEEP_LIST, "the metadata field 'layers' is corrupted (JSON nested too deeply)"),
    ("extra", DEEP_OBJECT, "the metadata field 'extra' is corrupted (JSON nested too deeply)"),
    ("hyper_config", "[1]", "the 'hyper_config' in the metadata is not a JSON object"),
    ("space_config", "[1]", "the 'space_config' in the metadata is not a JSON object"),
    ("extra", "5", "the 'extra' in the metadata is not a JSON object"),
], ids=["deep-hyper_config", "deep-layers", "deep-extra", "list-hyper_config", "list-space_config", "number-extra"])
def test_a_damaged_hypernet_header_is_a_problem_row_naming_the_field(make_hypernet, capsys, field, value, said):
    path = rewrite(make_hypernet(1), **{field: value})
    info = describe(path)
    assert said in dict(info.rows)["problem"] and info.use == ""
    assert shown(path, capsys)[0] == 0


def test_the_dtype_shown_is_the_tensors_own(adapter):
    rewrite(adapter, dtype="int8")  # the header's claim; the tensors are fp32
    info = describe(adapter)
    assert dict(info.rows)["file"].endswith("bytes, fp32") and info.values["file"]["dtype"] == "fp32"


def test_every_layer_name_of_the_built_in_backends_passes_the_name_check(tiny_sd, tmp_path):
    for source in (str(tiny_sd), "tinyfaces"):
        modules = load_sd(source).modules
        names = [name for name, _ in candidate_layers(modules, (*LAYER_TYPES, EMBEDDING))]
        assert any(name.startswith("text_encoder.") for name in names) and any(
            name.startswith("unet.") for name in names)
        assert len(checked_layers([[name, 1, 1] for name in names], tmp_path / "f.safetensors")) == len(names)


def test_the_tinyfaces_shipped_hypernetwork_still_shows():
    import lowdim_tinyfaces

    path = Path(lowdim_tinyfaces.__file__).parent / "hypernet" / "hypernet.safetensors"
    info = describe(path)
    assert "problem" not in dict(info.rows) and info.use.startswith("lowdim personalize -m tinyfaces --hypernet")
