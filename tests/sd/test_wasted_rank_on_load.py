"""``lowdim generate -a FILE`` draws with a file whose rank someone else chose: a rank above a layer's is no warning
there (its advice is for whoever trains, and it would name the internal adapter 'a0', not the file)."""

from __future__ import annotations

import warnings

import lowdim
from lowdim_cli.main import main
from lowdim_sd.loading import load_sd
from lowdim_sd.modes import resolve_layers


def test_generate_with_a_file_whose_rank_exceeds_small_layers_prints_no_warning(tiny_sd, tmp_path, capsys):
    model = load_sd(tiny_sd)
    adapters = lowdim.Adapters(model.modules)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # injecting it does warn: that is where the rank was chosen
        adapters.add("me", lowdim.get_space("lora", rank=40), resolve_layers(None, model.name), seed=0)
    adapter = tmp_path / "r40.safetensors"
    lowdim.save_adapter(adapter, adapters, "me")
    code = main(["generate", "-m", str(tiny_sd), "-a", str(adapter), "-p", "a photo of sks", "--steps", "1",
                 "-o", str(tmp_path / "img"), "--device", "cpu"])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert code == 0, text
    assert "Warning" not in text and "exceeds" not in text, text
