"""lowdim records an empty basis_checksum in a file whose space makes no frozen bases (LoRA); one that records a
checksum there was edited, so loading or exporting it is refused rather than taken as having nothing to check, and
``verify_bases=False`` is the opt-out, as for a mismatch (lowdim/bases_record.py)."""

from __future__ import annotations

import pytest
from test_basis_checksum_record import edited, saved, toy_model

import lowdim
from lowdim.errors import AdapterFileError

A_CHECKSUM = "0123456789abcdef"


def test_a_lora_file_that_records_a_basis_checksum_is_refused(tmp_path):
    path = edited(saved(tmp_path, "lora"), basis_checksum=A_CHECKSUM)
    with pytest.raises(AdapterFileError, match=r"lora\.safetensors: it records a basis_checksum, though its space "
                       r"'lora' makes no frozen bases") as refused:
        lowdim.load_adapter(path, toy_model())
    assert "\n" not in str(refused.value)
    with pytest.raises(AdapterFileError, match=r"lora\.safetensors: .*checksum"):
        lowdim.read_adapter(path).lora_factors()  # what export and merge read
    model = toy_model()
    lowdim.load_adapter(path, model, verify_bases=False)
    assert set(lowdim.Adapters(model).slots("default")) == {"unet.0", "unet.2"}
