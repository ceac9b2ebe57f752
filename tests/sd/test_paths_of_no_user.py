"""A path typed as ``~name/...`` where this machine has no user ``name`` is taken as written, as bash leaves such a
word: a folder named ``~name`` in the working folder. Every command given one goes on with that path or refuses it
in one line naming it, never with the traceback of ``Path.expanduser``'s RuntimeError ("Could not determine home
directory")."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lowdim.paths import expand_user
from lowdim_cli.main import main

pwd = pytest.importorskip("pwd")  # ~name is a user's home only where there are users to look up

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def no_user() -> str:
    """``~`` and a user name this machine does not have."""
    for number in range(1000):
        name = f"nosuchuser{number or ''}"
        try:
            pwd.getpwnam(name)
        except KeyError:
            return f"~{name}"
    raise AssertionError("every name tried is a user here")


def run(capsys, *args) -> tuple[int, list[str]]:
    code = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return code, (captured.out + captured.err).strip().splitlines()


def test_a_tilde_of_no_user_is_left_as_written_as_bash_leaves_it(no_user):
    assert expand_user(f"{no_user}/x") == Path(f"{no_user}/x")
    assert expand_user(Path(no_user)) == Path(no_user)


@pytest.mark.parametrize("typed", ["~", "~/x", "models/~/x", "/abs/x", "plain", "~root/x"])
def test_a_home_that_exists_is_expanded_as_the_shell_does(typed):
    assert expand_user(typed) == Path(os.path.expanduser(typed))
    assert expand_user(Path(typed)) == Path(os.path.expanduser(typed))


def test_train_out_of_no_user_makes_a_folder_of_that_name_here(tiny_sd, face, tmp_path, monkeypatch, capsys,
                                                                no_user):
    monkeypatch.chdir(tmp_path)
    code, said = run(capsys, "train", "-m", tiny_sd, "-i", face, "--steps", 1, "--out", f"{no_user}/x")
    assert code == 0, said
    assert (tmp_path / no_user / "x" / "adapter.safetensors").is_file()


@pytest.mark.parametrize("command", [
    ["personalize", "-m", "{u}/m", "-i", "{face}", "--out", "o", "--no-preview"],
    ["train", "-m", "{u}/m", "-i", "{face}", "--out", "o", "--steps", "1"],
    ["generate", "-m", "{u}/m", "-p", "a face", "-o", "o"],
    ["generate", "-m", "{model}", "-a", "{u}/a.safetensors", "-p", "a face", "-o", "o"],
    ["inspect", "-m", "{u}/m", "-s", "lidb"],
    ["show", "{u}/a.safetensors"],
    ["export", "{u}/a.safetensors"],
    ["merge", "-m", "{model}", "-a", "{u}/a.safetensors", "-o", "o.safetensors"],
    ["train-hypernet", "-w", "{u}/w", "-o", "o", "--steps", "1"],
    ["encoder-features", "-i", "{folder}", "--encoder", "{u}/encoder", "--resolution", "32", "-o",
     "f.safetensors"],
])
def test_a_missing_path_of_no_user_is_one_line_naming_it(tiny_sd, face, tmp_path, monkeypatch, capsys, no_user,
                                                          command):
    monkeypatch.chdir(tmp_path)
    words = [word.format(u=no_user, face=face, model=tiny_sd, folder=face.parent) for word in command]
    code, said = run(capsys, *words)
    assert code != 0 and not any("Traceback" in line or "home directory" in line for line in said), said
    assert len(said) == 1 and said[0].startswith("Error: ") and f"{no_user}/" in said[0], said


def test_a_hypernetwork_made_for_a_model_of_no_user_is_refused_as_for_another_model(tiny_sd, face, tmp_path,
                                                                                  make_hypernet, capsys, no_user):
    hypernet = make_hypernet(1, model=f"{no_user}/m")
    code, said = run(capsys, "personalize", "-m", tiny_sd, "-i", face, "--hypernet", hypernet, "--out",
                     tmp_path / "o", "--no-preview", "--only-hyper", "--no-crop")
    assert not any("Traceback" in line or "home directory" in line for line in said), said
    assert code != 0 and f"{no_user}/m" in said[-1], said


def test_the_page_refuses_a_model_of_no_user_as_any_model_not_here(no_user):
    from lowdim.errors import LowdimError
    from lowdim_sd.ui.checks import check_model
    from lowdim_sd.ui.photos import training_side

    with pytest.raises(LowdimError, match=f"model '{no_user}/m' is neither an installed model"):
        check_model(f"{no_user}/m")
    assert training_side(f"{no_user}/m") is None
