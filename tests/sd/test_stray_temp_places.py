"""What a killed write leaves (lowdim's temp and safetensors 0.8's own ``.tmpXXXXXX``, which it writes beside the
file it is asked for) stays inside one lowdim-named hidden place, which the next run sweeps and names; a write
still going on, and what lowdim did not make, are left alone (review A2)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
from killed_saves import killed_at_the_first_save  # tests/sd, on the path as pytest puts it

from lowdim import atomic
from lowdim.atomic import UNLOCKED_PLACE_AGE
from lowdim.files import atomic_write
from lowdim_sd.runs import clean_stray_temps

# A safetensors write killed with SIGKILL (killed_saves).
KILLED_SAVE = killed_at_the_first_save("""
    import torch
    from lowdim.files import atomic_save
    from pathlib import Path
    atomic_save({"a": torch.zeros(3)}, {}, Path(sys.argv[1]))
""")


def _killed_save(path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(path)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == -9, done.stderr


def test_the_next_run_removes_a_killed_saves_temps_and_names_them(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / ".tmpAbCd12").write_bytes(b"another program's temp")
    _killed_save(out / "adapter.safetensors")
    left = sorted(set(os.listdir(out)) - {".tmpAbCd12"})
    assert left and not any(name.startswith(".tmp") for name in left)  # safetensors' temp is inside lowdim's place
    with pytest.warns(UserWarning, match="removed") as said:
        removed = clean_stray_temps(out)
    assert sorted(path.name for path in removed) == left
    assert all(name in str(said[0].message) for name in left)
    assert os.listdir(out) == [".tmpAbCd12"]


def test_a_place_holding_what_lowdim_never_writes_is_kept(tmp_path):
    place = tmp_path / ".adapter.safetensors.abcd1234.tmp"
    place.mkdir()
    (place / "notes.txt").write_text("mine")
    assert clean_stray_temps(tmp_path) == []
    assert (place / "notes.txt").read_text() == "mine"


def test_a_users_links_named_like_temps_are_kept_and_not_reported(tmp_path):
    """A link is the user's: the sweep neither deletes one (to a file an hour old) nor claims to have removed one
    (to a folder holding only a file of the temp's name), which would make its warning false."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.json").write_text("{}")
    hour_ago = time.time() - 7200
    os.utime(mine / "keep.json", (hour_ago, hour_ago))
    os.utime(mine, (hour_ago, hour_ago))
    out = tmp_path / "o"
    out.mkdir()
    (out / ".keep.json.abcd1234.tmp").symlink_to(mine / "keep.json")
    (out / ".keep.json.efgh5678.tmp").symlink_to(mine)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a "removed ..." warning would be a false report
        assert clean_stray_temps(out) == []
    assert sorted(os.listdir(out)) == [".keep.json.abcd1234.tmp", ".keep.json.efgh5678.tmp"]
    assert (out / ".keep.json.abcd1234.tmp").read_text() == "{}" and os.listdir(mine) == ["keep.json"]


def test_a_write_going_on_is_not_swept(tmp_path):
    started, release, failed = threading.Event(), threading.Event(), []

    def slow_write(temp: str) -> None:
        with open(temp, "w") as handle:
            handle.write("first half,")
            started.set()
            release.wait(30)
            handle.write(" second half")

    def write() -> None:
        try:
            atomic_write(tmp_path / "record.json", slow_write)
        except BaseException as error:  # noqa: BLE001  (reported to the test below)
            failed.append(error)

    writer = threading.Thread(target=write)
    writer.start()
    assert started.wait(30)
    clean_stray_temps(tmp_path)
    release.set()
    writer.join(30)
    assert not failed and (tmp_path / "record.json").read_text() == "first half, second half"
    assert os.listdir(tmp_path) == ["record.json"]


def test_a_place_that_may_hold_the_only_copy_is_kept_when_its_block_fails(tmp_path):
    """The earlier merge moved aside by `merge --overwrite` is never removed with a swap that could not finish."""
    from lowdim.atomic import temp_place

    (tmp_path / "m").write_text("the earlier merge")
    with pytest.raises(OSError), temp_place(tmp_path / "m", keep_on_error=True) as aside:
        os.replace(tmp_path / "m", aside)
        raise OSError(16, "Device or resource busy")  # and putting it back failed too
    assert aside.read_text() == "the earlier merge"


def _aged(path: Path, seconds: float) -> Path:
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


@pytest.mark.parametrize(("age", "swept"), [(60, False), (2 * UNLOCKED_PLACE_AGE, True)])
def test_an_older_style_temp_file_is_swept_only_once_an_hour_old(tmp_path, age, swept):
    """Without a lock to ask, a young temp file of this shape may be another program's write going on."""
    temp = tmp_path / ".adapter.safetensors.abcd1234.tmp"
    temp.write_text("another program writes this now")
    _aged(temp, age)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the "removed ..." warning: the test below is about the files
        assert clean_stray_temps(tmp_path) == ([temp] if swept else [])
    assert temp.exists() != swept


@pytest.mark.parametrize(("age", "swept"), [(60, False), (2 * UNLOCKED_PLACE_AGE, True)])
def test_where_places_cannot_be_locked_a_young_one_is_kept(tmp_path, monkeypatch, age, swept):
    """NFS has no flock: a place no lock can be taken on may be another process's write, until it is an hour old."""
    place = tmp_path / ".adapter.safetensors.abcd1234.tmp"
    place.mkdir()
    (place / "adapter.safetensors").write_text("half")
    _aged(place, age)
    monkeypatch.setattr(atomic, "_lock", lambda handle, wait: None)  # what flock on NFS comes to
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert clean_stray_temps(tmp_path) == ([place] if swept else [])
    assert place.exists() != swept


@pytest.mark.parametrize("name", ["ADAPTER.SAFETENSORS", "Me.SafeTensors", "RECORD.JSON"])
def test_a_killed_write_of_a_file_named_in_capitals_is_swept(tmp_path, name):
    """A file lowdim writes is one whatever the case of its suffix: its killed write's leftovers go too."""
    place = tmp_path / f".{name}.abcd1234.tmp"
    place.mkdir()
    (place / name).write_text("half")
    old_style = tmp_path / f".{name}.efgh5678.tmp"  # an older lowdim's temp file
    old_style.write_text("half")
    _aged(old_style, 2 * UNLOCKED_PLACE_AGE)
    with pytest.warns(UserWarning, match="removed"):
        assert sorted(clean_stray_temps(tmp_path)) == [place, old_style]
    assert os.listdir(tmp_path) == []
