"""The shape groupings the hypernetwork tests run over (tests/test_hyper.py, tests/test_hyper_levers.py,
tests/test_retrieval_keys.py).

lidb a=6, b=5 clamps q, k, v and o to one shape, so make_net's default has a single group, and a group paired with
another group's rows, head or statistics goes unseen; a=10, b=10 leaves three: (q, k), (v), (o). The tests that
move θ between per-layer params and the grouped state, build one linear map per group, keep statistics per group,
or store a retrieval bank (one values<g> per group) take the ``lidb`` fixture and run on both. A test module
imports it as ``from hyper_groupings import lidb_over_groupings  # noqa: F401``; pytest knows it as ``lidb``.
"""

from __future__ import annotations

import pytest

import lowdim

GROUPINGS = {"one-group": ({"a": 6, "b": 5}, 1), "three-groups": ({"a": 10, "b": 10}, 3)}


@pytest.fixture(scope="module", params=list(GROUPINGS), name="lidb")
def lidb_over_groupings(request: pytest.FixtureRequest) -> lowdim.Space:
    from test_hyper import LAYERS  # here, not at the top: test_hyper imports this module

    from lowdim.hyper.layout import Grouping, param_layout

    options, groups = GROUPINGS[request.param]
    space = lowdim.get_space("lidb", **options)
    assert len(Grouping.build([param_layout(space, layer) for layer in LAYERS], "shape").members) == groups
    return space
