"""peft's names for what ``Adapters`` does under lowdim's own: a peft user's first guess (``adapters.unload()``,
``print_trainable_parameters()``) gets the lowdim call that does it, not a bare AttributeError."""

from __future__ import annotations

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
