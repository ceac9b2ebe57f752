"""Three refusals that name the user's real mistake (review FD rows FII, N1, DV 3), all in-process:
`personalize -m nosuchdir` names the model, not the photo's missing face; `python -m lowdim` goes through the
console script's entry (its early Ctrl-C/SIGTERM handlers); peft's `inject(target_modules=...)` names `targets=`."""

from __future__ import annotations

import runpy

import huggingface_hub
import pytest
from PIL import Image
from torch import nn

import lowdim
import lowdim.hub
from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd.loading import hub_id_not_found
from lowdim_sd.personalize import PersonalizeJob, personalize


def personalize_says(model: str, photo, out, capsys) -> tuple[int, str]:
    code = main(["personalize", "-m", model, "-i", str(photo), "-o", str(out), "--no-preview"])
    return code, " ".join(capsys.readouterr().err.split())


def test_a_bare_word_the_hub_cache_lacks_is_named_before_the_photo(tmp_path, capsys, monkeypatch):
    """FII: a bare word far from every registered name was read as a hub id and went on to the face check, which
    blamed the photo ("no face found ... pass --no-crop"); now it is the load's own line, as generate says it."""
    monkeypatch.chdir(tmp_path)  # no folder called nosuchdir
    monkeypatch.setattr(lowdim.hub, "hub_reachable", lambda *args, **kwargs: False)  # as here: no network
    blank = tmp_path / "blank.png"  # no face: the crop's check would refuse it
    Image.new("RGB", (64, 64), (128, 128, 128)).save(blank)
    code, err = personalize_says("nosuchdir", blank, tmp_path / "me", capsys)
    assert code == 1, err
    # generate's line (its load's, which takes seconds of imports and lookup to say it), as the CLI words it
    assert err.startswith("Error: could not load 'nosuchdir': no installed model (lowdim models lists them"), err
    assert err.endswith("then pass --model PATH (a diffusers folder or a .safetensors checkpoint)"), err
    assert "no face" not in err and not (tmp_path / "me").exists(), err
    with pytest.raises(LowdimError) as refused:
        personalize(PersonalizeJob(model="nosuchdir", image=blank, out=tmp_path / "me", preview=False),
                    progress=False)
    assert str(refused.value) == str(hub_id_not_found("nosuchdir"))  # word for word, as load_sd says it
    # An owner/name id (only a lookup tells), and a bare word the cache holds, go on to the photo (this one no image)
    broken = tmp_path / "face.png"
    broken.write_bytes(b"not a png")
    code, err = personalize_says("someone/some-model", broken, tmp_path / "me", capsys)
    assert code == 1 and "not a readable image" in err, err
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *args, **kwargs: str(tmp_path))
    code, err = personalize_says("nosuchdir", broken, tmp_path / "me", capsys)
    assert code == 1 and "not a readable image" in err, err


def test_with_the_hub_reachable_a_bare_word_goes_on_to_the_load_which_asks_it(tmp_path, capsys, monkeypatch):
    """Review FE 3: the line says the hub id is not reachable, so it is said only where the hub cannot be asked;
    with a network the load asks the hub (a root-level id may be there), as generate's does."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(lowdim.hub, "hub_reachable", lambda *args, **kwargs: True)
    broken = tmp_path / "face.png"
    broken.write_bytes(b"not a png")
    code, err = personalize_says("nosuchdir", broken, tmp_path / "me", capsys)
    assert code == 1 and "not a readable image" in err, err


def test_python_m_lowdim_goes_through_the_console_scripts_entry(monkeypatch):
    """N1: ``python -m lowdim`` ran the commands without the early signal handlers, so a SIGTERM while they
    imported ended it silently with 143, where ``lowdim`` says one line and exits 130."""
    import lowdim_cli.entry
    import lowdim_cli.main

    called = []
    monkeypatch.setattr(lowdim_cli.entry, "script", lambda: called.append("entry"))
    monkeypatch.setattr(lowdim_cli.main, "script", lambda: called.append("commands without early handlers"))
    runpy.run_module("lowdim", run_name="__main__")
    assert called == ["entry"]


@pytest.mark.parametrize(("word", "names"), [("target_modules", "targets="), ("r", "get_space('lora', rank="),
                                             ("lora_alpha", "alpha="), ("lora_dropout", "dropout=")])
def test_peft_keywords_to_inject_name_lowdims_own(word, names):
    """DV 3: peft's LoraConfig keywords were a bare TypeError that never said lowdim's word for them."""
    model = nn.Sequential(nn.Linear(3, 3))
    with pytest.raises(LowdimError, match=rf"^inject\(\) takes no '{word}' \(peft's name\); here: .*") as refused:
        lowdim.inject(model, lowdim.get_space("lora"), **{word: ["0"]})
    assert names in str(refused.value) and "\n" not in str(refused.value)
    assert isinstance(refused.value, TypeError)  # review FE 4: a caller falling back on TypeError still does
    assert lowdim.Adapters(model).names() == []  # nothing added
    with pytest.raises(TypeError, match="sead"):  # any other unknown keyword is still Python's own error
        lowdim.inject(model, lowdim.get_space("lora"), "0", sead=3)


def test_adapters_add_names_lowdims_own_for_a_peft_keyword_too():
    model = nn.Sequential(nn.Linear(3, 3))
    adapters = lowdim.inject(model, lowdim.get_space("lora"), "0")
    with pytest.raises(LowdimError, match=r"^Adapters\.add\(\) takes no 'target_modules' \(peft's name\); "
                                          r"here: targets="):
        adapters.add(lowdim.get_space("lora"), target_modules=["0"], name="second")
    assert adapters.names() == ["default"]
    with pytest.raises(TypeError):  # as any unknown keyword: a caller falling back on TypeError still does
        adapters.add(lowdim.get_space("lora"), target_modules=["0"], name="second")
