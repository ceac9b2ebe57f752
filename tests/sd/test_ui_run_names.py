"""Two ``lowdim ui`` servers on one ``--out`` (review AN3): a run claims its name by making its hidden folder, so
two runs of photos of the same name in the same second get two names, not one folder both write."""

from __future__ import annotations

from pathlib import Path

from lowdim_sd.ui import run_folders
from lowdim_sd.ui.run_folders import PARTIAL, claim_run_name


def test_two_claims_in_the_same_second_get_two_names_and_two_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(run_folders.time, "strftime", lambda _format: "20261205-120000")
    first = claim_run_name(tmp_path, Path("me.png"))
    second = claim_run_name(tmp_path, Path("other/me.png"))
    assert (first, second) == ("20261205-120000-me", "20261205-120000-me-2")
    assert (tmp_path / f".{first}{PARTIAL}").is_dir() and (tmp_path / f".{second}{PARTIAL}").is_dir()


def test_a_claim_that_loses_the_race_for_a_name_takes_the_next(tmp_path, monkeypatch):
    monkeypatch.setattr(run_folders.time, "strftime", lambda _format: "20261205-120000")
    made = Path.mkdir

    def another_server_first(self, *args, **kwargs):  # the other server makes the same folder just before us
        if self.name == f".20261205-120000-me{PARTIAL}" and not self.exists():
            made(self)
        return made(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", another_server_first)
    assert claim_run_name(tmp_path, Path("me.png")) == "20261205-120000-me-2"


def test_a_second_server_starting_keeps_a_run_just_claimed_and_sweeps_an_old_lockless_one(tmp_path):
    import os
    import time

    from lowdim_sd.ui.run_folders import PARTIAL_GRACE_S, clean_partials

    claimed = claim_run_name(tmp_path, Path("me.png"))  # no lock yet: personalize takes it once it starts
    old = tmp_path / f".20200101-000000-old{PARTIAL}"
    old.mkdir()
    os.utime(old, (time.time() - PARTIAL_GRACE_S - 60,) * 2)
    assert clean_partials(tmp_path) == [old]
    assert (tmp_path / f".{claimed}{PARTIAL}").is_dir()
    assert claim_run_name(tmp_path, Path("me.png")) != claimed  # still held, so never claimed twice


def test_a_claim_under_a_missing_out_folder_fails_at_once_rather_than_trying_names_forever(tmp_path):
    import pytest

    (tmp_path / "link").symlink_to(tmp_path / "gone")  # --out whose disk went away while the server ran
    with pytest.raises(OSError):
        claim_run_name(tmp_path / "link", Path("me.png"))


def test_a_photos_odd_file_name_makes_a_run_name_read_run_accepts(tmp_path, monkeypatch):
    """Review CF6: a name legal on Linux (a backslash, a space, brackets) made a run that finished and then could
    not open, as ``read_run`` refuses such a name."""
    monkeypatch.setattr(run_folders.time, "strftime", lambda _format: "20261205-120000")
    assert claim_run_name(tmp_path, Path("my\\photo (1).png")) == "20261205-120000-my-photo-1"
    assert claim_run_name(tmp_path, Path("(((.png")) == "20261205-120000-photo"


def test_a_claim_passes_over_a_run_finished_under_that_name_in_the_same_second(tmp_path, monkeypatch):
    """Review CF12: a finished run holds no claim folder any more; taking its name would write the new run's
    downloads under it, so two runs would offer NAME.lowdim.safetensors."""
    monkeypatch.setattr(run_folders.time, "strftime", lambda _format: "20261205-120000")
    (tmp_path / "20261205-120000-me").mkdir()  # published a moment ago, its .partial renamed away
    assert claim_run_name(tmp_path, Path("me.png")) == "20261205-120000-me-2"
    assert not (tmp_path / f".20261205-120000-me{PARTIAL}").exists()
