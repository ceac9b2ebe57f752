"""`lowdim export` decides what a file is and exports it from one reading (review AQ, not reached there): it
sniffed the header for an embedding, then read the adapter again, so a LoRA replaced by a Textual Inversion file
between the two (another run's atomic rename) was refused as "an embedding layer in a LoRA"."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import safetensors
from safetensors import safe_open

from lowdim_sd.export import export_adapter


def test_a_lora_replaced_by_an_embedding_after_export_read_it_is_exported_as_read(lidb_and_ti, tmp_path,
                                                                                  monkeypatch):
    lidb, ti = lidb_and_ti
    source = shutil.copy(lidb, tmp_path / "me.safetensors")
    real_safe_open, opens = safetensors.safe_open, []

    def replaced_after_the_first_look(path, *args, **kwargs):
        if Path(path) == Path(source):
            opens.append(path)
            if len(opens) == 2:  # another run's `train --overwrite` renames its TI file over it now
                os.replace(shutil.copy(ti, tmp_path / "new.tmp"), source)
        return real_safe_open(path, *args, **kwargs)

    for module in list(sys.modules.values()):
        if vars(module).get("safe_open") is real_safe_open:
            monkeypatch.setattr(module, "safe_open", replaced_after_the_first_look)
    out = export_adapter(source, tmp_path / "me.peft.safetensors", "diffusers", "fp32")
    with safe_open(str(out), framework="pt") as handle:
        assert handle.metadata()["lora_format"] == "diffusers"
    assert len(opens) == 1
