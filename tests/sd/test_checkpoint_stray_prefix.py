"""Full DreamBooth's checkpoint names each tensor PART.NAME: a key whose part only *starts* like a part the run trains
(``unetx.weight``, ``unet_extra.bias``) is a part it does not train, refused as any other stray tensor (review BT7),
not passed by the stray check and then left out of the UNet's strict load without a word."""

from __future__ import annotations

import pytest
import torch

import lowdim
from lowdim_sd.loading import load_sd
from lowdim_sd.modes import FullTrainable

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("key", ["unetx.weight", "unet_extra.bias", "unet"])
def test_a_part_name_that_only_starts_like_the_unet_is_refused(tiny_sd, key):
    trainable = FullTrainable(load_sd(str(tiny_sd)))  # trains the UNet only
    state = trainable.state()
    with pytest.raises(lowdim.LowdimError, match=rf"^unexpected tensor {key!r}: this run trains the unet only"):
        trainable.load_state({**state, key: torch.zeros(2)})
    trainable.load_state(state)  # as written: loads
