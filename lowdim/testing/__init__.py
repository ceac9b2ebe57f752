"""What a plugin's own tests reuse: the shared space contract suite and the formulas it checks against.

Importing this package needs the test extras (pytest, hypothesis): ``pip install "lowdim[test]"``.
Run the contract over an installed space with ``python -m pytest --pyargs lowdim.testing.space_contract -k NAME``,
or pull it into a test module of your own (see docs/plugins.md).
"""

import pytest

# A plugin's test module pulls the suite in with `import *`: pytest shows the values behind a failed assert
# only in modules it rewrites, which this one is not unless registered before its first import.
pytest.register_assert_rewrite("lowdim.testing.space_contract")

from lowdim.testing.references import REFERENCE_DELTA, reference_delta  # noqa: E402

__all__ = ["REFERENCE_DELTA", "reference_delta"]
