"""`lowdim export` decides what a file is and exports it from one reading (review AQ, not reached there): it
sniffed the header for an embedding, then read the adapter again, so a LoRA replaced by a Textual Inversion file
between the two (another run's atomic rename) was refused as "an embedding layer in a LoRA"."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import safetensors
from safetensors import safe_open

import lowdim
from lowdim_sd.export import export_adapter
from lowdim_sd.loading import load_sd
from lowdim_sd.modes import ADAPTER, resolve_layers
from lowdim_sd.textual_inversion import ti_trainable


@pytest.fixture(scope="module")
def lidb_and_ti(tiny_sd, tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("adapters")
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    view = lowdim.Adapters(model.modules)
    view.add("default", lowdim.get_space("lidb"), resolve_layers(None), seed=0)
    lidb = lowdim.save_adapter(folder / "lidb.safetensors", view, "default", token="zwx")
    model = load_sd(str(tiny_sd), "cpu", "fp32")
    ti_trainable(model, lowdim.get_space("ti", vectors=1, init_word="face"), token="sks")
    ti = lowdim.save_adapter(folder / "ti.safetensors", lowdim.Adapters(model.modules), ADAPTER, token="sks")
    return lidb, ti


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
