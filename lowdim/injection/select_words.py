"""What a message says of the layers a pattern met: why a pattern matches no layer (``select_layers``' refusal:
the parameter it named, a second name of a layer, peft's habit of a bare module name, the nearest real names), and
what a module that is no target is (its kind, the wrapper it sits in: ``what_matched``, ``kind_words``, also for a
file that does not fit, ``lowdim.file_fit``). Kept apart from the choosing itself (``select``), which imports it.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from lowdim.injection.matching import compiled_pattern, layer_kind, literal_name, matches
from lowdim.option_words import counted, either

if TYPE_CHECKING:  # torch loads with the first model, as in select
    from torch import nn

    from lowdim.injection.select import LayerSet

# The lowdim command's one way to adapt an embedding (its --layers patterns take none); Python's LayerSet names one.
ONLY_AS_TI = ("the lowdim command adapts an embedding only as Textual Inversion (--space ti, without --layers: new "
              "token vectors in the text encoder's token embedding); another space adapts it from Python, given")


def no_match_message(pattern: str, layer_set: LayerSet, names: list[str], model: nn.Module) -> str:
    """The line ``select_layers`` refuses ``pattern`` of ``layer_set`` with, where it matches none of the model's
    candidate layers ``names``: what it met instead, or the real names nearest to it."""
    tail = pattern.rsplit(".", 1)[-1]
    same_tail = [name for name in names if name.rsplit(".", 1)[-1] == tail][:3]
    examples = same_tail or difflib.get_close_matches(pattern.replace("*", ""), names, n=3, cutoff=0.3) or names[:3]
    where = f" (layer set '{layer_set.name}')" if layer_set.name != pattern and not layer_set.plain_patterns else ""
    matched = [(name, module) for name, module in model.named_modules() if name and matches(pattern, name)]
    # GPT-2's Conv1Ds are what a broad pattern meant there, not the embedding or block that comes first.
    other = next((pair for pair in matched if type(pair[1]).__name__ == "Conv1D"), matched[0] if matched else None)
    found = f" ({what_matched(model, *other, layer_set)})" if other is not None else ""
    if parameter_words := _parameter_words(pattern, model, names):
        return f"pattern '{pattern}'{where} matches no layer: {parameter_words}"
    if alias := _second_name(pattern, model, names):
        return (f"pattern '{pattern}'{where} matches no layer by its first name: '{alias[0]}' is the same module as "
                f"'{alias[1]}' (a module held under two names is one layer, which its wrapper and saved files name by "
                f"its first name): target '{alias[1]}'")
    if not names and layer_kind(model) in layer_set.types:
        return (f"the model itself is an nn.{type(model).__name__}, and adapters go on the layers inside a model: "
                f"wrap it, e.g. nn.Sequential(layer), and target '0'")
    if same_tail and literal_name(pattern) == pattern and "." not in pattern:  # peft's habit: a bare module name
        count = counted(sum(name.rsplit(".", 1)[-1] == tail for name in names), "layer")
        return (f"pattern '{pattern}'{where} matches no layer: a pattern matches whole dotted names, so "
                f"'*.{pattern}' is the one that matches the {count} named {pattern}, e.g. {same_tail[0]}")
    return (
        f"pattern '{pattern}'{where} matches no {'/'.join(layer_set.types)} layer{found}; "
        f"real names look like: {', '.join(examples) or 'none: the model has no such layers'}"
    )


def _second_name(pattern: str, model: nn.Module, names: list[str]) -> tuple[str, str] | None:
    """(alias, first name) where the pattern names a layer by a second name (``self.b = self.a``): named_modules
    gives each module once, under its first name, which is the name its wrapper and a saved file go by."""
    def own(module: nn.Module) -> int:  # a wrapper stands for the layer it holds
        return id(module.base_layer if getattr(module, "is_lowdim_wrapper", False) else module)

    known = set(names)
    first = {own(module): name for name, module in model.named_modules() if name in known}
    for name, module in model.named_modules(remove_duplicate=False):
        original = first.get(own(module))
        if original is not None and name != original and not name.endswith(".base_layer") and matches(pattern, name):
            return name, original
    return None


# Why no part of an nn.MultiheadAttention is a target, for every message that meets one.
MHA_WORDS = ("no part of an nn.MultiheadAttention can carry adapters: it computes q, k and v from its bare "
             "in_proj_weight parameter and reads out_proj.weight instead of calling out_proj; an attention built "
             "from nn.Linear layers can be adapted")


def _parameter_words(pattern: str, model: nn.Module, names: list[str]) -> str | None:
    """Where the pattern names a parameter (``attn.in_proj_weight``, ``fc.weight``) rather than a layer: what to
    target instead, or why nothing there can be (None: it names no parameter)."""
    from torch import nn

    expression = compiled_pattern(pattern)
    found = next((name for name, _ in model.named_parameters() if expression.fullmatch(name)), None)
    if found is None:
        return None
    owner_name = found.rpartition(".")[0]
    for mha_name in (owner_name, owner_name.rpartition(".")[0]):  # in_proj_weight, or out_proj's weight
        if isinstance(model.get_submodule(mha_name), nn.MultiheadAttention):
            return f"'{found}' is a parameter of the nn.MultiheadAttention '{mha_name}', not a layer, and {MHA_WORDS}"
    if owner_name in names:
        return f"'{found}' is a parameter of layer '{owner_name}': patterns name layers, so target '{owner_name}'"
    return None


def what_matched(model: nn.Module, name: str, module: nn.Module, layer_set: LayerSet | None = None) -> str:
    """Why a module the pattern names is no target: its kind, or the wrapper it sits in."""
    parent_name, _, last = name.rpartition(".")
    parent = model.get_submodule(parent_name) if last == "base_layer" else None
    if parent is None:
        return f"'{name}' is {_peft_words(module) or kind_words(module, layer_set)}"
    if getattr(parent, "is_lowdim_wrapper", False):
        return f"'{name}' is the layer inside lowdim's wrapper of layer {parent_name}: target '{parent_name}'"
    # peft's merge and unload write into a wrapper's base_layer and hand it back in the wrapper's place, so a
    # layer inside one is never a target: peft would drop or overwrite the adapter lowdim put there.
    wrapper = _peft_words(parent) or f"a {type(parent).__name__}"
    return f"'{name}' is the layer inside '{parent_name}', and a wrapper's inner layer is no target: it is {wrapper}"


def peft_layer_words(module: nn.Module) -> str | None:
    """peft's own layer, named as peft's: None for any other module."""
    cls = type(module)
    if not cls.__module__.startswith("peft."):
        return None
    kind = "LoRA layer" if ".lora" in cls.__module__ else "adapter layer"
    return f"peft's {kind} ({cls.__module__}.{cls.__qualname__}), which lowdim cannot adapt as well"


def _peft_words(module: nn.Module) -> str | None:
    """peft's own layer with what a pattern can do about it: None for any other module."""
    what = peft_layer_words(module)
    return f"{what}: target other layers, or fold peft's adapters in with merge_and_unload() first" if what else None


def kind_words(module: nn.Module, layer_set: LayerSet | None = None) -> str:
    """What a matched module is, in the words a user needs to pick another one (``layer_set``: the targets it was
    matched for, whose types left it out)."""
    from torch import nn

    if isinstance(module, nn.Conv2d) and layer_kind(module) is None:
        return f"a Conv2d with a {module.kernel_size[0]}x{module.kernel_size[1]} kernel, stride {module.stride[0]}, " \
               f"padding {module.padding if isinstance(module.padding, str) else module.padding[0]} " \
               f"and {counted(module.groups, 'group')}: only a plain 1x1 convolution is linear per pixel"
    if isinstance(module, nn.MultiheadAttention):
        return f"an nn.MultiheadAttention: {MHA_WORDS}"
    kind, name = layer_kind(module), type(module).__name__
    if name == "Conv1D":  # transformers' GPT-2 layer: a linear layer whose weight is stored (in, out)
        return "a transformers Conv1D (GPT-2's transposed linear layer), which lowdim does not adapt"
    article = "an" if name[0] in "AEIOU" else "a"
    if kind and layer_set is not None and layer_set.plain_patterns:  # no LayerSet given: name the types patterns take
        return (f"{article} {name}, which {either('--layers patterns', 'patterns given as a string or list')} leave "
                f"out (they take {' and '.join(layer_set.types)} layers): {either(ONLY_AS_TI, 'to adapt it, give')} "
                f"the targets as lowdim.LayerSet({layer_set.name!r}, {layer_set.include!r}, "
                f"types={(*layer_set.types, kind)!r})")
    return f"{article} {name}" + (f", which this layer set's types ({kind} not among them) leave out" if kind else "")
