"""``read_adapter(path, verify_bases=False)`` returns a file that exports (``lora_factors``) as unchecked as it loads.

What users rely on: the opt-out a file was read with holds for what export and merge do with it, so a file that
can be loaded unchecked can be turned into a LoRA too; read with the default, the same file is still refused.
"""

from __future__ import annotations

import pytest
import torch
from test_basis_checksum_record import edited, saved, toy_model

import lowdim
from lowdim.errors import AdapterFileError


@pytest.mark.parametrize("edit", [{"basis_checksum": ""}, {"seed": "12"}], ids=["unrecorded", "mismatch"])
def test_a_file_read_without_the_bases_check_gives_its_lora_factors(tmp_path, edit):
    path = edited(saved(tmp_path), **edit)
    with pytest.raises(AdapterFileError, match="records no basis_checksum|checksum mismatch"):
        lowdim.read_adapter(path).lora_factors()
    factors = lowdim.read_adapter(path, verify_bases=False).lora_factors()
    model = toy_model()
    lowdim.load_adapter(path, model, verify_bases=False)
    live = lowdim.Adapters(model).lora_factors("default")
    assert set(factors) == set(live) == {"unet.0", "unet.2"}
    for layer, (down, up) in factors.items():  # the adapter as it loads unchecked, exactly
        torch.testing.assert_close(up @ down, live[layer][1] @ live[layer][0], rtol=0, atol=0)

