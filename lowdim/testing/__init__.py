"""What a plugin's own tests reuse: the shared space contract suite and the formulas it checks against.

Importing this package needs the test extras (pytest, hypothesis): ``pip install "lowdim[test]"``.
Run the contract over an installed space with ``python -m pytest --pyargs lowdim.testing.space_contract -k NAME``,
or pull it into a test module of your own (see docs/plugins.md).
"""

from lowdim.testing.references import REFERENCE_DELTA, reference_delta

__all__ = ["REFERENCE_DELTA", "reference_delta"]
