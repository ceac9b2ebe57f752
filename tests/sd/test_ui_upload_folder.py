"""Each ``lowdim ui`` keeps its uploads in a folder of its own: Gradio's shared folder names a file by its
content, so a closing server that removed its files there removed another server's upload of the same photo."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest
from ui_servers import BOUND, Server  # tests/sd, on the path as pytest puts it

from lowdim_sd.ui import upload_folder
from lowdim_sd.ui.upload_folder import ENV, private_uploads, remove_dead_servers_folders

pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")

FACE = Path(__file__).resolve().parents[2] / "examples" / "face.png"


@pytest.fixture
def shared(tmp_path, monkeypatch) -> Path:
    """A Gradio folder of this test's own, as a user's GRADIO_TEMP_DIR."""
    monkeypatch.setenv(ENV, str(tmp_path / "gradio"))
    return tmp_path / "gradio"


def test_a_server_removes_only_its_own_folder_and_restores_the_setting(shared):
    with private_uploads() as first:
        assert os.environ[ENV] == str(first) and first.parent == shared
        assert stat.S_IMODE(first.stat().st_mode) == 0o700  # another user cannot read the photos
        with private_uploads() as second:  # as another server would, in a process of its own
            for folder in (first, second):  # the same photo, kept under the same content hash by each
                (folder / "4555be98aa").mkdir()
                (folder / "4555be98aa" / "face.png").write_bytes(b"photo")
        assert not second.exists() and (first / "4555be98aa" / "face.png").read_bytes() == b"photo"
        assert os.environ[ENV] == str(first)
    assert not first.exists() and os.environ[ENV] == str(shared)


def test_a_dead_servers_folder_goes_at_the_next_start_and_others_stay(shared):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    alive = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        tag = upload_folder._host_tag()
        shared.mkdir()
        left = shared / f"{upload_folder.PREFIX}{tag}-{int(dead.stdout)}-abc"  # a second Ctrl-C's quit at once
        live = shared / f"{upload_folder.PREFIX}{tag}-{alive.pid}-def"  # another server's, still running
        elsewhere = shared / f"{upload_folder.PREFIX}00000000-{int(dead.stdout)}-ghi"  # another machine's
        hashes = shared / "4555be98aa"  # a Gradio server's own, not lowdim's
        for folder in (left, live, elsewhere, hashes):
            folder.mkdir()
            (folder / "face.png").write_bytes(b"photo")
        with private_uploads() as own:  # the start alone sweeps (review BT5): gone before the page is built
            assert sorted(path.name for path in shared.iterdir()) == sorted(
                path.name for path in (live, elsewhere, hashes, own))
    finally:
        alive.communicate(timeout=10)
    assert sorted(path.name for path in shared.iterdir()) == sorted(path.name for path in (live, elsewhere, hashes))


def test_the_sweep_names_the_folders_it_removed(shared):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    shared.mkdir()
    left = shared / f"{upload_folder.PREFIX}{upload_folder._host_tag()}-{int(dead.stdout)}-abc"
    left.mkdir()
    assert remove_dead_servers_folders(shared) == [left] and not left.exists()


def test_a_user_with_no_folder_set_has_none_set_after_the_server_closes(tmp_path, monkeypatch):
    """Gradio then goes back to its own default, not to a removed folder (review BT6): a page built after, in the
    same Python process, would otherwise keep its uploads where nothing can be written."""
    monkeypatch.setenv(ENV, "")  # recorded, so what a failing run leaves set is undone for the tests after it
    monkeypatch.delenv(ENV)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the default shared folder, tmp_path/gradio
    with private_uploads() as own:
        assert os.environ[ENV] == str(own) and own.parent == tmp_path / "gradio"
    assert ENV not in os.environ and not own.exists()


def upload(port: int, photo: Path) -> Path:
    """Upload ``photo`` as the page's file control does; the path the server keeps it at."""
    body = (b"--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"face.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" + photo.read_bytes() + b"\r\n--b--\r\n")
    sent = urllib.request.Request(f"http://127.0.0.1:{port}/gradio_api/upload", body,
                                  {"Content-Type": "multipart/form-data; boundary=b"})
    with urllib.request.urlopen(sent, timeout=BOUND) as answer:
        [path] = json.loads(answer.read())
    return Path(path)


@pytest.mark.slow
def test_a_closing_server_leaves_another_servers_upload_of_the_same_photo(tmp_path, shared):
    servers = []
    try:
        servers += [Server(tmp_path / name) for name in ("a", "b")]
        kept = [upload(server.port, FACE) for server in servers]
        assert kept[0] != kept[1] and all(path.is_file() for path in kept)
        for index, server in enumerate(servers):
            assert server.stop() == 130, server.output()
            if index == 0:  # still there for the second server's Personalize
                assert not kept[0].exists() and kept[1].read_bytes() == FACE.read_bytes()
    finally:
        for server in servers:
            server.close()
    assert list(shared.glob(f"{upload_folder.PREFIX}*")) == []  # each server's folder went with it
