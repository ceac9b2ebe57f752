"""A photo whose header reads but whose data is cut short (a partly downloaded file): refused by the page when it
is dropped, before any model loads, and by the CLI in one plain line naming it, not in PIL's words."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from safetensors.torch import save_file
from torch import nn

import lowdim
from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd.ui.photos import check_photo
from lowdim_sd.ui.studio import RunSettings, Studio, StudioConfig

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "face.png"


def cut_photo(folder: Path, suffix: str) -> Path:
    """examples/face.png (saved as a JPEG for ".jpg"), keeping the first 60% of its bytes: its header whole."""
    whole = folder / f"whole{suffix}"
    with Image.open(EXAMPLE) as face:
        face.convert("RGB").save(whole)
    cut = folder / f"face{suffix}"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) * 6 // 10])
    with Image.open(cut) as opened:  # the header still reads: only decoding finds the data missing
        assert opened.size == (128, 128)
    return cut


def cut_line(suffix: str) -> str:
    """The page's line for a cut photo: it is a JPEG or PNG already, so only the whole file again helps."""
    return f"face{suffix} is cut short (a partly downloaded or copied photo); drop the whole photo again"


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_a_cut_photo_is_refused_when_dropped_in_the_pages_words(tmp_path, suffix):
    cut = cut_photo(tmp_path, suffix)
    with pytest.raises(LowdimError) as caught:
        check_photo(cut)
    assert str(caught.value) == cut_line(suffix)
    assert check_photo(tmp_path / f"whole{suffix}").name == f"whole{suffix}"  # the whole photo still passes


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_personalize_on_a_cut_photo_stops_before_the_model_loads(tmp_path, tiny_sd, suffix, monkeypatch):
    import lowdim_sd.personalize as personalize_module

    started = []

    def starts(*args, **kwargs):
        started.append("a run or a model load")
        raise AssertionError("a run started on a cut photo")

    monkeypatch.setattr(personalize_module, "personalize", starts)
    monkeypatch.setattr("lowdim_sd.loading.load_sd", starts)
    studio = Studio(StudioConfig(model=str(tiny_sd), out=tmp_path / "ui"))
    settings = RunSettings(model=str(tiny_sd), steps=2, crop=False, preview_steps=1)
    with pytest.raises(LowdimError) as caught:
        studio.personalize(cut_photo(tmp_path, suffix), settings)
    assert str(caught.value) == cut_line(suffix)
    assert started == [] and not any((tmp_path / "ui").glob("*"))


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_the_cli_says_a_cut_photo_is_cut_short_in_one_line(tmp_path, tiny_sd, suffix, capsys):
    cut = cut_photo(tmp_path, suffix)
    code = main(["personalize", "-m", str(tiny_sd), "-i", str(cut), "-o", str(tmp_path / "out"), "--steps", "1",
                 "--no-crop", "--no-preview"])
    captured = capsys.readouterr()
    said = [line for line in (captured.out + captured.err).splitlines() if line.strip()]
    assert code == 1 and len(said) == 1, said
    assert said[0].endswith(f"file {cut} is not a readable image: its data is cut short (a truncated or partly "
                            f"downloaded file)")
    assert "Traceback" not in said[0] and "bytes not processed" not in said[0]


@pytest.mark.parametrize("cut", [False, True])  # whole, or cut inside its tensors: an adapter all the same
def test_an_adapter_dropped_as_the_photo_is_named_one_and_sent_to_draws_adapter_box(tmp_path, cut):
    model = nn.Sequential(nn.Linear(16, 16))
    lowdim.inject(model, lowdim.get_space("lora", rank=4), ["0"])
    adapter = lowdim.save_adapter(tmp_path / "adapter.safetensors", model)
    if cut:
        whole = adapter.read_bytes()
        adapter.write_bytes(whole[:8 + int.from_bytes(whole[:8], "little") + 10])
    with pytest.raises(LowdimError) as caught:
        check_photo(adapter)
    assert str(caught.value) == ('adapter.safetensors is a lowdim adapter, not a photo: drop it in Draw\'s "Or draw '
                                 'an adapter file" box to draw with it')


def test_another_safetensors_file_dropped_as_the_photo_is_named_as_one(tmp_path):
    import torch

    weights = tmp_path / "model.safetensors"
    save_file({"x": torch.zeros(4)}, str(weights))
    with pytest.raises(LowdimError) as caught:
        check_photo(weights)
    assert str(caught.value) == "model.safetensors is a .safetensors file, not a photo; use a JPEG, PNG or WebP photo"
