"""Suite-wide test settings (applies to tests/ and plugins/*/tests/)."""

import torch

# The test models are tiny: a second OpenMP thread buys nothing and, on a busy 2-core machine,
# spin-waiting threads make them many times slower.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """The modules holding a slow test go first, each kept whole. pytest-xdist (``--dist loadscope`` in
    pyproject.toml) hands a module to one worker, so a module's shared fixture is built once; the long
    modules handed out first run beside the rest of the suite instead of alone at its end."""
    slow = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in slow)  # stable: order within each part kept
