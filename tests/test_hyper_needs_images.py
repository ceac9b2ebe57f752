"""A hypernetwork head called with neither images nor their features says what to give (lowdim/hyper/encoder.py)."""

from __future__ import annotations

import pytest
from test_hyper import make_net
from test_hyper_levers import retrieval_net

from lowdim.errors import LowdimError

pytest.importorskip("transformers")


@pytest.mark.parametrize("make", [make_net, retrieval_net], ids=["transformer", "retrieval"])
def test_a_head_given_no_images_and_no_features_names_both(make):
    net = make().eval()
    with pytest.raises(LowdimError, match=r"images .*features="):
        net(None)
