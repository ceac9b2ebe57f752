"""Model backends from plugins, as docs/plugins.md describes them: a backend's own layer sets are the ones every
command trains, an alias is the same model as its name, lowdim's own `sd15` stays whatever a plugin claims, a
clashed name is the documented one-line error everywhere, and a backend no command could use is refused as it
registers (review B)."""

from __future__ import annotations

import sys
import warnings
from importlib.metadata import EntryPoint

import pytest
from test_plugins import plugin_module
from torch import nn

import lowdim
from lowdim import plugins
from lowdim.backends import Backend
from lowdim.errors import LowdimError, PluginError
from lowdim.injection.select import LayerSet
from lowdim_cli.main import main
from lowdim_sd import architecture
from lowdim_sd.plugin import SDBackend

CROSS = LayerSet("cross", ("unet.*.attn2.to_q", "unet.*.attn2.to_v"))
SELF_QV = LayerSet("self-qv", ("unet.*.attn1.to_q", "unet.*.attn1.to_v"))


class MiniSD(SDBackend):
    """An SD1.x model of a plugin with layer sets of its own, as docs/plugins.md allows."""

    layer_sets = {"cross": CROSS, "self-qv": SELF_QV}
    default_layer_set = "cross"


class Toy(Backend):
    """A generic (not SD) backend: `lowdim inspect` counts on it, the SD commands cannot load it."""

    name, aliases = "toy", ("toy-mlp",)
    layer_sets = {"all": LayerSet("all", ("*",))}
    default_layer_set = "all"

    def skeleton(self) -> nn.Module:
        return nn.Sequential(*[nn.Linear(4, 4) for _ in range(3)])


def minisd(name: str = "minisd", aliases: tuple[str, ...] = ("mini", "mini-sd")) -> MiniSD:
    return MiniSD(name, "/nowhere/minisd", aliases=aliases)


def backends_plugin(plugin: str, *backends):
    def register_backends(register):
        for backend in backends:
            register(backend)

    return plugin_module(plugin, register_backends=register_backends)


def registry(*modules, lazy: bool = False) -> lowdim.Registry:
    """lowdim's built-ins and its SD backend (as `lowdim` loads them), then ``modules``."""
    manager = plugins.build_plugin_manager(["lowdim.spaces.builtin", "lowdim_sd.plugin", *modules],
                                           load_entry_points=False)
    return lowdim.Registry.from_manager(manager, lazy=lazy)


def plugin_warnings(make):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        made = make()
    return made, [str(w.message) for w in caught if issubclass(w.category, plugins.PluginWarning)]


def run(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split())  # rich wraps long lines


# ----------------------------------------------------------------- B1: a backend's own layer sets, everywhere


def test_the_sd_commands_train_a_registered_models_own_layer_sets():
    from lowdim_sd.modes import resolve_layers

    with lowdim.use_registry(registry(backends_plugin("mysd", minisd()))):
        assert resolve_layers(None, "minisd") == CROSS  # its default, the set `lowdim inspect` counts
        assert resolve_layers("self-qv", "mini") == SELF_QV  # an alias is the same model
        with pytest.raises(LowdimError, match="unknown layer set 'unet\\+text' for minisd; known: cross, self-qv"):
            resolve_layers("unet+text", "minisd")
        assert resolve_layers(None, "sd15") == architecture.LAYER_SETS["unet+text"]
        # A path or hub id is an SD1.x model read from its files: SD1.5's sets, and an error names it.
        assert resolve_layers("unet", "owner/some-finetune") == architecture.LAYER_SETS["unet"]
        with pytest.raises(LowdimError, match="unknown layer set 'cross' for ./my-model;"):
            resolve_layers("cross", "./my-model")


# ---------------------------------------------------------------------- B2: an alias is the model it names


def test_an_alias_is_recorded_as_the_backends_own_name():
    from lowdim_sd.loading import canonical_model

    with lowdim.use_registry(registry(backends_plugin("mysd", minisd()))):
        assert canonical_model("mini") == "minisd" and canonical_model("minisd") == "minisd"
        assert canonical_model("sd1.5") == "sd15" == canonical_model("stable-diffusion-1.5")
        assert canonical_model("owner/some-finetune") == "owner/some-finetune"


# --------------------------------------------------- B3: lowdim's own sd15 stays; a clashed name goes whole


@pytest.mark.parametrize("lowdim_first", [True, False])
def test_a_plugin_backend_named_sd15_is_ignored_and_lowdims_stays(monkeypatch, lowdim_first):
    """lowdim's SD backend loads as the entry point `sd`, but its names are lowdim's own, as the spaces' are."""
    impostor = backends_plugin("impostor", MiniSD("sd15", "/nowhere/impostor", aliases=("imp",)))
    monkeypatch.setitem(sys.modules, "impostor", impostor)
    points = [EntryPoint(name="sd", value="lowdim_sd.plugin", group="lowdim"),
              EntryPoint(name="impostor", value="impostor", group="lowdim")]
    monkeypatch.setattr(plugins, "entry_points", lambda group: points if lowdim_first else points[::-1])
    built, said = plugin_warnings(lambda: lowdim.Registry.from_plugins(load_entry_points=True))
    assert len(said) == 1 and "plugin 'impostor' registers backend 'sd15', a name lowdim's own backend has" in said[0]
    for name in ("sd15", "sd1.5", "stable-diffusion-1.5"):
        assert built.backend(name).source == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert "imp" not in built.backends  # the ignored backend is not reachable under its aliases either


def test_a_backend_name_two_plugins_claim_is_left_out_with_its_aliases_and_using_any_says_uninstall_one():
    one = backends_plugin("one", MiniSD("foo", "/one", aliases=("foo-one",)))
    two = backends_plugin("two", MiniSD("foo", "/two", aliases=("foo-two",)))
    built, said = plugin_warnings(lambda: registry(one, two))
    assert said == ["backend 'foo' is registered twice: by plugin 'one' and by plugin 'two'; it is left out until "
                    "one of them is uninstalled"]
    assert not {"foo", "foo-one", "foo-two"} & set(built.backends) and "sd15" in built.backends
    for name in ("foo", "foo-one", "foo-two"):
        with pytest.raises(PluginError, match="backend 'foo' is registered twice: .*: uninstall one of them"):
            built.backend(name)


def test_models_lists_the_rest_with_a_warning_when_a_name_is_clashed(capsys):
    one = backends_plugin("one", MiniSD("foo", "/one", aliases=("foo-one",)))
    two = backends_plugin("two", MiniSD("foo", "/two"))
    with lowdim.use_registry(registry(one, two, backends_plugin("mysd", minisd()), lazy=True)):
        code = main(["models"])  # the table is built here, as in `lowdim models`
    table, warning = capsys.readouterr()
    assert code == 0 and " ".join(warning.split()).startswith("Warning: backend 'foo' is registered twice")
    assert "minisd" in table and "sd15" in table and "foo" not in table


# ---------------------------------------------------------------- B4: a clashed alias is the clash error


@pytest.fixture
def alias_clash():
    """`mini` claimed by minisd and by another plugin's backend as an alias."""
    other = backends_plugin("other", MiniSD("other-sd", "/other", aliases=("mini",)))
    with pytest.warns(plugins.PluginWarning, match="backend 'mini' is registered twice"):
        built = registry(backends_plugin("mysd", minisd()), other)
    with lowdim.use_registry(built):
        yield built


CLASH = "backend 'mini' is registered twice: by plugin 'mysd' and by plugin 'other': uninstall one of them to use it"


def test_a_clashed_alias_is_the_clash_error_in_every_command(alias_clash, capsys):
    from lowdim_sd.loading import canonical_model, load_sd

    for check in (load_sd, canonical_model):
        with pytest.raises(PluginError, match=CLASH):
            check("mini")
    for args in (["inspect", "-m", "mini", "-s", "lidb", "--no-files"], ["show", "mini"]):
        assert run(capsys, *args) == (1, f"Error: {CLASH}")
    assert alias_clash.backend("mini-sd").name == "minisd"  # the rest of the backend works


def test_every_lookup_of_a_models_defaults_says_the_clash_not_a_path_or_a_default(alias_clash):
    """The model's crop default, shipped hypernetwork, bench prompts, looks reader and files: each read from a
    clashed name would otherwise take it for a hub id and use SD1.5's defaults without a word."""
    from lowdim_sd.bench.methods import model_describer
    from lowdim_sd.bench.quality import bench_prompts, shipped_hypernet
    from lowdim_sd.face_inputs import backend_crops
    from lowdim_sd.model_tree import model_path

    for lookup in (backend_crops, shipped_hypernet, bench_prompts, model_describer, model_path):
        with pytest.raises(PluginError, match=CLASH):
            lookup("mini")


def test_models_lists_no_withdrawn_alias(alias_clash, capsys):
    code, said = run(capsys, "models")
    assert code == 0 and "mini-sd" in said and "mini," not in said and "mini │" not in said


# -------------------------------------------------------------- B5: a name repeated among its own aliases


def test_a_backend_repeating_its_name_among_its_aliases_is_registered_quietly():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        built = registry(backends_plugin("self", minisd("selfish", aliases=("selfish", "me"))))
    assert built.backend("selfish").name == "selfish" == built.backend("me").name


# ------------------------------------------------------------ B7: a generic backend with the SD commands


def test_an_sd_command_on_a_model_that_is_not_sd_says_so_in_one_line(capsys, tmp_path):
    from PIL import Image

    from lowdim_sd.file_info import describe
    from lowdim_sd.loading import load_sd

    face = tmp_path / "face.png"
    Image.new("RGB", (32, 32)).save(face)
    expected = ("model '{0}', registered by plugin 'toyplug', is not an SD1.x model: lowdim's SD commands "
                "(personalize, train, generate, ...) need a lowdim_sd.plugin.SDBackend; `lowdim inspect -m {0} "
                "-s lidb` works with it")
    with lowdim.use_registry(registry(backends_plugin("toyplug", Toy()))):
        with pytest.raises(LowdimError, match=re_escape(expected.format("toy-mlp"))):
            load_sd("toy-mlp")
        code, said = run(capsys, "personalize", "-m", "toy", "-i", face, "-o", tmp_path / "out", "--no-crop")
        assert (code, said) == (1, f"Error: {expected.format('toy')}") and not (tmp_path / "out").exists()
        assert run(capsys, "inspect", "-m", "toy", "-s", "lora", "--no-files")[0] == 0  # as the line says
        assert "personalize" not in describe("toy").use and "lowdim inspect -m toy" in describe("toy").use


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


# --------------------------------------------------------- B8: a backend no command could use is refused


@pytest.mark.parametrize(("backend", "said"), [
    (MiniSD("", "/x"), "backend MiniSD: name '' must be lower-case letters, digits and . _ + -"),
    (MiniSD("My Model", "/x"), "backend MiniSD: name 'My Model' must be lower-case letters"),
    (MiniSD("ok", "/x", aliases=("bad/alias",)), "backend MiniSD: name 'bad/alias' must be lower-case letters"),
    # ("mini") without its comma: refused, not registered as the models m, i and n
    (MiniSD("ok", "/x", aliases="mini"), "backend MiniSD: aliases must be a tuple of names, got the string 'mini'"),
    (type("NoDefault", (MiniSD,), {"default_layer_set": "no-such-set"})("nodefault", "/x"),
     "backend 'nodefault' (NoDefault): default_layer_set 'no-such-set' is not one of its layer_sets (cross, self-qv)"),
    (Toy, "register_backends expects a lowdim.backends.Backend instance, got <class"),
])
def test_a_backend_no_command_could_use_is_refused_as_it_registers(backend, said):
    built, warned = plugin_warnings(lambda: registry(backends_plugin("broken", backend, Toy())))
    assert len(warned) == 1 and "plugin 'broken' raised in register_backends and was skipped" in warned[0]
    assert said in warned[0]
    assert "toy" not in built.backends and "sd15" in built.backends  # skipped whole, as for spaces
    assert not {"ok", "m", "i", "n"} & set(built.backends)


def test_a_backend_without_a_skeleton_is_one_line_naming_it(capsys):
    class NoSkeleton(Backend):
        name, layer_sets, default_layer_set = "noskel", {"all": LayerSet("all", ("*",))}, "all"

    with lowdim.use_registry(registry(backends_plugin("noskelplug", NoSkeleton()))):
        code, said = run(capsys, "inspect", "-m", "noskel", "-s", "lora", "--no-files")
    assert code == 1 and said.startswith("Error: backend 'noskel' (") and "defines no skeleton()" in said


# ------------------------------------------------------------------------------------ B9: LOWDIM_NO_PLUGINS


@pytest.mark.parametrize(("value", "loads"), [("0", True), ("false", True), ("No", True), ("", True),
                                              ("1", False), ("yes", False)])
def test_lowdim_no_plugins_off_values_load_the_plugins(monkeypatch, value, loads):
    monkeypatch.setitem(sys.modules, "toyplug", backends_plugin("toyplug", Toy()))
    monkeypatch.setattr(plugins, "entry_points", lambda group: [EntryPoint("toyplug", "toyplug", "lowdim")])
    monkeypatch.setenv("LOWDIM_NO_PLUGINS", value)
    manager = plugins.build_plugin_manager()
    assert (manager.get_plugin("toyplug") is not None) == loads


def test_with_lowdim_no_plugins_set_an_unknown_model_says_so(monkeypatch, capsys):
    from lowdim_sd.loading import load_sd

    monkeypatch.setenv("LOWDIM_NO_PLUGINS", "1")
    with lowdim.use_registry(lowdim.Registry.from_plugins(["lowdim.spaces.builtin"])):
        with pytest.raises(LowdimError, match="unknown model 'tinyfaces'.*LOWDIM_NO_PLUGINS is set"):
            load_sd("tinyfaces")  # not sent to the hub
        code, said = run(capsys, "inspect", "-m", "sd15", "-s", "lidb", "--no-files")
        assert code == 1 and "LOWDIM_NO_PLUGINS is set" in said
        code, said = run(capsys, "models")
        assert code == 0 and "LOWDIM_NO_PLUGINS is set" in said


def test_the_ui_lists_only_sd_models_and_refuses_another_kind_before_serving(capsys, tmp_path):
    pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")
    from lowdim_sd.ui.checks import check_model, installed_models

    expected = ("model 'toy', registered by plugin 'toyplug', is not an SD1.x model: lowdim's SD commands "
                "(personalize, train, generate, ...) need a lowdim_sd.plugin.SDBackend; `lowdim inspect -m toy "
                "-s lidb` works with it")
    with lowdim.use_registry(registry(backends_plugin("toyplug", Toy()))):
        assert "toy" not in installed_models() and "sd15" in installed_models()
        with pytest.raises(LowdimError, match=re_escape(expected)):
            check_model("toy")
        code, said = run(capsys, "ui", "-m", "toy", "--out", tmp_path / "ui", "--port", "7991")
        assert (code, said) == (1, f"Error: {expected}") and not (tmp_path / "ui").exists()
