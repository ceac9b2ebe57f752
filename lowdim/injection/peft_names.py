"""peft's names for what ``Adapters`` does under lowdim's own: a peft user's first guess (``adapters.unload()``,
``print_trainable_parameters()``) gets the lowdim call that does it, not a bare AttributeError; peft's keywords
(``inject(..., target_modules=...)``) get lowdim's, not a bare TypeError."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from lowdim.errors import LowdimError

Params = ParamSpec("Params")
Result = TypeVar("Result")

PEFT_NAMES = {
    "unload": "remove_all() takes every adapter off and restores the modules; merge_and_unload() folds them in first",
    "disable_adapter": "disabled(names), a context manager as peft's disable_adapter() is",
    "disable_adapters": "disable(name)",
    "enable_adapters": "enable(name)",
    "set_adapter": "enable(name) and disable(name): several adapters can be on at once",
    "delete_adapter": "delete(name)",
    "merge_adapter": "merge(name)",
    "unmerge_adapter": "unmerge(name)",
    "add_adapter": "add(name, space, layers)",
    "active_adapters": "names(), with enable/disable per adapter",
    "active_adapter": "names(), with enable/disable per adapter (several can be on at once)",
    "print_trainable_parameters": "info(name).num_params, one subject's (sum(p.numel() for p in parameters(name)) "
                                  "for all a batch=K adapter trains; print(adapters) lists every adapter)",
    "get_nb_trainable_parameters": "info(name).num_params, one subject's (sum(p.numel() for p in "
                                   "parameters(name)) for all a batch=K adapter trains)",
    "save_pretrained": "lowdim.save_adapter(path, model)",
    "load_adapter": "lowdim.load_adapter(path, model)",
}


def missing_attribute(owner: str, name: str) -> AttributeError:
    """Python's own error for ``name``, or for one of peft's names the call that does it here."""
    hint = PEFT_NAMES.get(name)
    if hint is None:
        return AttributeError(f"'{owner}' object has no attribute '{name}'")
    return AttributeError(f"'{owner}' has no '{name}' (peft's name); here: {hint}")


class PeftKeywordError(LowdimError, TypeError):
    """A peft keyword lowdim names otherwise: a TypeError, as any unknown keyword is (a caller falling back to
    lowdim's keywords on TypeError still does), and a LowdimError, one line for the CLI."""


# peft's LoraConfig keywords, as a peft user passes them to inject, with what says the same here.
PEFT_KEYWORDS = {
    "target_modules": "targets=, glob patterns or re: regexes matched against full dotted layer names "
                      "(targets=['*to_q', '*to_v'])",
    "r": "the space's config: get_space('lora', rank=...)",
    "lora_alpha": "the space's config: get_space('lora', rank=..., alpha=...)",
    "lora_dropout": "dropout=",
}


def refusing_peft_keywords(function: Callable[Params, Result]) -> Callable[Params, Result]:
    """``function``, with peft's keywords (``target_modules=``) refused in one line naming lowdim's. Its signature
    stays the one type checkers and ``inspect.signature`` see, with no ``**kwargs``: any other unknown keyword
    (``sead=``) is still Python's TypeError."""

    @functools.wraps(function)
    def call(*args: Params.args, **kwargs: Params.kwargs) -> Result:
        given = next((word for word in PEFT_KEYWORDS if word in kwargs), None)
        if given is not None:
            raise PeftKeywordError(f"{function.__qualname__}() takes no '{given}' (peft's name); here: "
                                   f"{PEFT_KEYWORDS[given]}")
        return function(*args, **kwargs)

    return call
