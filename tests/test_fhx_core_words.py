"""The generic core (``lowdim/``) knows no SD backend: no SD key prefixes, no A1111/ComfyUI/``--format kohya``/``-m``
advice, no train-hypernet flag table, no ``lowdim_sd`` names. The SD words come from ``lowdim_sd`` (its Backend's
``foreign_file_advice``, ``hyper_flags_named``), and without them the core's lines still say what a file is."""

from __future__ import annotations

import ast
import types
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import lowdim
from lowdim import plugins
from lowdim.backends import Backend
from lowdim.errors import ConfigError
from lowdim.foreign_files import not_ours
from lowdim.hookspecs import hookimpl
from lowdim.injection.select import LayerSet
from lowdim.option_words import command_line
from lowdim.registry import Registry, use_registry

if TYPE_CHECKING:  # a name for annotations only: at HEAD before FHX it was missing, and each test failed apart
    from lowdim.foreign_files import ForeignFile

CORE = Path(lowdim.__file__).parent
SD_WORDS = ("lowdim_sd", "unet", "text_encoder", "diffusers", "comfyui", "a1111", "kohya")
# Format names a foreign file is told by (what lowdim export records as lora_format / embedding_format): what the
# file is, which the core says; never where it loads.
FORMAT_NAMES = {"diffusers", "diffusers/peft", "kohya", "a1111"}
# Messages of files outside this task's reach that name the diffusers *library*'s own calls (removing its hooks,
# fusing peft) for a model a user built with it: left, see session 61's FHX report.
LIBRARY_ADVICE = {"filecheck.py", "file_fit.py", "injection/factor_cache.py", "injection/stacked.py"}


def _docstrings(tree: ast.AST) -> set[int]:
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {id(node.body[0].value) for node in ast.walk(tree) if isinstance(node, kinds) and node.body
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}


def _code_words(path: Path) -> list[tuple[int, str]]:
    """(line, text) of what ``path`` runs with: names, imported modules and string constants, not its comments
    (ast drops them) or docstrings."""
    tree = ast.parse(path.read_text())
    docstrings = _docstrings(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.Name):
            found.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute):
            found.append((node.lineno, node.attr))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            found += [(node.lineno, getattr(node, "module", None) or ""), *((node.lineno, a.name) for a in node.names)]
    return found


def _sd_words_in(path: Path) -> list[str]:
    shown = path.relative_to(CORE).as_posix()
    hits = []
    for line, text in _code_words(path):
        if shown == "foreign_files.py" and text in FORMAT_NAMES:
            continue
        words = [word for word in SD_WORDS if word in text.lower()]
        if shown in LIBRARY_ADVICE:
            words = [word for word in words if word != "diffusers"]
        hits += [f"{shown}:{line}: {word} in {text[:60]!r}" for word in words]
    return hits


def test_the_core_names_no_sd_words_outside_comments():
    files = [path for path in sorted(CORE.rglob("*.py")) if "testing" not in path.relative_to(CORE).parts]
    assert len(files) > 50
    hits = [hit for path in files for hit in _sd_words_in(path)]
    assert hits == []


def test_the_scan_sees_a_word_in_a_message(tmp_path):
    """The scan can fail: an SD word in a raised line is found, one in a comment or a docstring is not."""
    path = tmp_path / "fhx_sample.py"
    path.write_text('"""Docstring: unet."""\n# a comment: kohya\nX = f"{1}: pass it in ComfyUI"\n')
    assert [text for _, text in _code_words(path) if "ComfyUI" in text] == [": pass it in ComfyUI"]
    assert not any("unet" in text or "kohya" in text for _, text in _code_words(path))


# -- foreign files without a backend that advises: what the file is, in one line ---------------------------------
SD_KOHYA = ["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"]
SD_PEFT = ["unet.down_blocks.0.attentions.0.proj_in.lora_A.weight"]
CHECKPOINT = ["model.diffusion_model.input_blocks.0.0.weight", "cond_stage_model.x.weight"]


@pytest.fixture
def no_advice():
    with use_registry(Registry.from_plugins(["lowdim.spaces.builtin"], load_entry_points=False)) as registry:
        assert registry.backends == {}
        yield


def _lower_words(line: str) -> list[str]:
    """The SD backend's words in ``line``: where a file loads, or the flag a checkpoint goes to."""
    return [word for word in ("unet", "text_encoder", "comfyui", "--model", "-m)", "pipe.", "lowdim_sd")
            if word in line.lower()]


def test_a_kohya_lora_without_a_backend_is_named_with_the_generic_peft_advice(no_advice):
    said = not_ours(Path("x.safetensors"), "adapter", {}, SD_KOHYA)
    assert said == ("x.safetensors: this is a kohya LoRA, not a lowdim adapter: use it with peft "
                    "(PeftModel.from_pretrained); lowdim reads only the adapter files it writes (lowdim export "
                    "makes LoRAs of them)")
    assert _lower_words(said) == []


def test_an_embedding_without_a_backend_says_what_it_is_and_no_app(no_advice):
    said = not_ours(Path("e.safetensors"), "adapter", {"token": "zwx"}, ["emb_params"])
    assert said == ("e.safetensors: this is a Textual Inversion embedding (a1111 format), not a lowdim adapter; "
                    "lowdim draws with the adapter file it was exported from")
    assert _lower_words(said) == []


def test_a_checkpoint_without_a_backend_is_one_line_naming_the_file(no_advice):
    said = not_ours(Path("m.safetensors"), "adapter", {"format": "pt"}, CHECKPOINT)
    assert said == "m.safetensors: not a lowdim adapter (metadata 'format' is 'pt')"
    assert _lower_words(said) == []


# -- with lowdim's SD backend: its words, as before -------------------------------------------------------------
@pytest.fixture
def sd_backend():
    with use_registry(Registry.from_plugins(["lowdim.spaces.builtin", "lowdim_sd.plugin"], load_entry_points=False)):
        yield


def test_the_sd_backend_names_a_whole_checkpoint_and_the_flag_it_goes_to(sd_backend):
    assert not_ours(Path("m.safetensors"), "adapter", {}, CHECKPOINT) == \
        "m.safetensors: a whole model checkpoint, not a lowdim adapter: pass it with --model (-m)"


def test_the_sd_backend_says_where_an_sd_lora_loads(sd_backend):
    said = not_ours(Path("x.safetensors"), "adapter", {}, SD_PEFT)
    assert said.startswith("x.safetensors: this is a diffusers/peft LoRA, not a lowdim adapter: use it in diffusers "
                           "(pipe.load_lora_weights); ComfyUI and A1111 read the kohya format; ")
    other_model = not_ours(Path("y.safetensors"), "adapter", {}, ["encoder.layer.0.q.lora_A.weight"])
    assert ": use it with peft (PeftModel.from_pretrained); " in other_model


# -- a third-party backend's advice is used as lowdim's own is --------------------------------------------------
class _PlainBackend(Backend):
    name, layer_sets, default_layer_set = "plainmodel", {"all": LayerSet.from_patterns("*")}, "all"

    def foreign_file_advice(self, file: ForeignFile) -> str | None:
        return f"load it with plainmodel.load_{file.what}()" if file.what in ("lora", "embedding") else None


def test_a_plugin_backend_supplies_its_own_advice():
    module = types.ModuleType("fhx_plain_backend")
    module.register_backends = hookimpl(lambda register: register(_PlainBackend()))  # type: ignore[attr-defined]
    with use_registry(Registry.from_plugins(["lowdim.spaces.builtin", module], load_entry_points=False)):
        said = not_ours(Path("x.safetensors"), "adapter", {}, SD_KOHYA)
    assert said.startswith("x.safetensors: this is a kohya LoRA, not a lowdim adapter: load it with "
                           "plainmodel.load_lora(); ")


# -- (d) lowdim's own plugins declare it -------------------------------------------------------------------------
def _manager_with(name: str, declared: object):
    module = types.ModuleType(name)
    if declared is not None:
        module.LOWDIM_FIRST_PARTY = declared  # type: ignore[attr-defined]
    manager = plugins.new_plugin_manager()
    manager.register(module, name="fhx")
    return manager


def test_a_plugin_module_that_declares_itself_first_party_is_lowdims_own():
    import lowdim_sd.plugin

    assert plugins.is_lowdims_own(_manager_with("fhx_own", "fhx_own"), "fhx")
    assert not plugins.is_lowdims_own(_manager_with("fhx_other", None), "fhx")
    # a star import of lowdim_sd.plugin's names copies its declaration, which names another module
    assert not plugins.is_lowdims_own(_manager_with("fhx_copy", lowdim_sd.plugin.LOWDIM_FIRST_PARTY), "fhx")
    assert not plugins.is_lowdims_own(_manager_with("fhx_true", True), "fhx")
    manager = plugins.new_plugin_manager()
    manager.register(lowdim_sd.plugin, name="sd")
    assert plugins.is_lowdims_own(manager, "sd")


# -- (a) and (b): the tiny encoder is the core's; the flags are train-hypernet's own -----------------------------
def test_the_tiny_encoder_is_the_cores_and_lowdim_sd_re_exports_it():
    import lowdim.hyper
    from lowdim.hyper import encoder
    from lowdim_sd import hypertrain

    assert lowdim.hyper.TINY_ENCODER is hypertrain.TINY_ENCODER is encoder.TINY_ENCODER
    assert encoder._ENCODER_WORDS.get()[1] == "HyperConfig(encoder_config=TINY_ENCODER) (from lowdim.hyper)"


def test_outside_train_hypernet_the_command_line_names_hyperconfigs_field():
    from lowdim.hyper import HyperConfig

    with command_line(), pytest.raises(ConfigError, match=r"^HyperConfig\(attention_heads=\.\.\.\) \(3\) must "
                                                          r"divide HyperConfig\(width=\.\.\.\) \(16\)$"):
        HyperConfig.from_dict({"width": 16, "attention_heads": 3})


def test_train_hypernet_names_its_own_flags_on_the_command_line(tmp_path, monkeypatch):
    """A refusal HyperConfig raises inside a train-hypernet run names the command's flags, as before."""
    from lowdim.hyper import HyperConfig
    from lowdim_sd import hypertrain

    def dataset(*args, **kwargs):
        return HyperConfig.from_dict({"width": 16, "attention_heads": 3})

    monkeypatch.setattr(hypertrain, "WeightDataset", dataset)
    job = hypertrain.HyperTrainJob(weights=tmp_path / "w", out=tmp_path / "out", hyper={"width": 16})
    with command_line(), pytest.raises(ConfigError, match=r"^--heads \(3\) must divide --width \(16\)$"):
        hypertrain.train_hypernet(job, progress=False)
