"""Suite-wide test settings (applies to tests/ and plugins/*/tests/)."""

import torch

# The test models are tiny: a second OpenMP thread buys nothing and, on a busy 2-core machine,
# spin-waiting threads make them many times slower.
torch.set_num_threads(1)
