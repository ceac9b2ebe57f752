"""Defaults of the SD backend's training runs, each in one place (CLI help texts read them from here)."""

from __future__ import annotations

STEPS = 400  # `lowdim train` and `precompute` from scratch
FINETUNE_STEPS = 40  # rank-relaxed fast finetuning after an initial adapter (the paper's §4.3)
SCRATCH_STEPS = 600  # `personalize` with no hypernetwork: from zero, 40 steps barely move the identity
HYPERNET_STEPS = 1000  # `train-hypernet`
FINETUNE_LR = 3e-3  # personalize's fast finetuning (chosen on validation identities, docs/results.md)
# Images (noise draws of the one reference) per fast-finetuning step: the paper's one. A backend may ship
# its own batch and rate for the 40 steps after a prediction (TinyFaces: 8 at 1e-2, docs/ladder.md).
FINETUNE_BATCH = 1
# `train` / `precompute` learning rate per mode (a space's name, "full", or "relaxed" for --init)
# ti: Textual Inversion's base rate (Gal et al. 2022, before their scaling by batch size and GPUs)
LEARNING_RATES = {"full": 5e-6, "lora": 1e-4, "lidb": 2e-3, "relaxed": 1e-3, "ti": 5e-3}
OTHER_LR = 1e-4  # a plugin space not listed above that declares no Space.learning_rate


def learning_rate(mode: str) -> float:
    """The starting rate of a `train` / `precompute` mode: ours above, else the space's own declared rate."""
    if mode in LEARNING_RATES:
        return LEARNING_RATES[mode]
    import lowdim
    from lowdim.registry import space_package
    from lowdim.spaces.checks import learning_rate_problem

    try:
        declared = lowdim.get_registry().space_class(mode).learning_rate
    except lowdim.LowdimError:  # an unknown space: the run refuses it by name later
        declared = None
    # Checked as the space registered; a class changed since is still the space's fault, not the user's --lr.
    if problem := learning_rate_problem(declared):
        package = space_package(mode)
        raise lowdim.LowdimError(f"space '{mode}'{f' (package {package})' if package else ''}: {problem}")
    return declared if declared is not None else OTHER_LR
