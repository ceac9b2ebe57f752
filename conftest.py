"""Suite-wide test settings (applies to tests/ and plugins/*/tests/)."""

import torch

# The test models are tiny: a second OpenMP thread buys nothing and, on a busy 2-core machine,
# spin-waiting threads make them many times slower.
torch.set_num_threads(1)


def _module(item) -> str:
    return item.nodeid.split("::")[0]


def pytest_collection_modifyitems(config, items):
    """Modules run whole on one worker (``--dist loadscope``) in the order left here (``--no-loadscope-reorder``,
    both in pyproject.toml), so the long ones go first and run beside the rest instead of alone at the end: the
    first module using tests/strict_checker.py (its cold mypy minute), then the modules holding a slow test, then
    the rest. The other strict-checker modules go last: by then that cache makes them take seconds, where early
    they would hold a worker waiting on its lock."""
    slow = {_module(item) for item in items if item.get_closest_marker("slow")}
    strict = sorted({_module(item) for item in items if item.get_closest_marker("strict_checker")})

    def rank(item) -> int:
        module = _module(item)
        if module in strict:
            return 0 if module == strict[0] else 3
        return 1 if module in slow else 2

    items.sort(key=rank)  # stable: the order within each part is kept
