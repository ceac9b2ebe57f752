"""A dead server's upload folder goes at the next start even when the new server has the dead one's pid (review
DU 0): in a container ``lowdim ui`` gets the same pid at each start, and asking whether that pid is alive
answers for the new server itself, so the face photos of each server ended by kill -9 or ``docker kill`` stayed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lowdim_sd.ui import upload_folder
from lowdim_sd.ui.upload_folder import ENV, PREFIX, private_uploads


@pytest.fixture
def shared(tmp_path, monkeypatch) -> Path:
    """A Gradio folder of this test's own, as a user's GRADIO_TEMP_DIR."""
    monkeypatch.setenv(ENV, str(tmp_path))
    return tmp_path


def left_behind(shared: Path, pid: int, name: str) -> Path:
    """The folder of a server of this machine that had ``pid``, holding an uploaded photo."""
    folder = shared / f"{PREFIX}{upload_folder._host_tag()}-{pid}-{name}"
    folder.mkdir()
    (folder / "photo.jpg").write_bytes(b"someone's face")
    return folder


@pytest.fixture
def live_pid() -> Iterator[int]:
    """Another process of this machine, alive while the test runs: another ``lowdim ui``."""
    other = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    yield other.pid
    other.communicate(timeout=10)


def test_a_dead_servers_uploads_go_at_the_start_of_a_server_with_its_pid(shared):
    dead = left_behind(shared, os.getpid(), "abc123")  # the last server in this container, killed
    with private_uploads() as mine:
        assert not dead.exists(), "the dead server's photos stay for good: its pid is this server's own"
        assert mine.is_dir() and f"-{os.getpid()}-" in mine.name
    assert list(shared.iterdir()) == []


def test_a_server_started_twice_in_one_process_keeps_the_first_ones_uploads(shared):
    """A notebook serving a second page while the first still runs: both folders have its pid, both are live."""
    with private_uploads() as first:
        (first / "photo.jpg").write_bytes(b"uploaded to the first page")
        with private_uploads() as second:
            assert first.is_dir() and (first / "photo.jpg").is_file() and second.is_dir()
        assert (first / "photo.jpg").is_file() and not second.exists()
    with private_uploads() as third:  # and once both closed, the next start there finds nothing of theirs
        assert list(shared.iterdir()) == [third]


def test_another_live_servers_uploads_stay(shared, live_pid):
    live = left_behind(shared, live_pid, "def456")
    with private_uploads():
        assert (live / "photo.jpg").is_file()
    assert (live / "photo.jpg").is_file()
