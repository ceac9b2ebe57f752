"""Each ``lowdim ui`` keeps its uploads in a folder of its own: Gradio's shared folder names a file by its
content, so a closing server that removed its files there removed another server's upload of the same photo."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from local_port import free_port  # tests/sd, on the path as pytest puts it

from lowdim_sd.ui import upload_folder
from lowdim_sd.ui.upload_folder import ENV, private_uploads, remove_dead_servers_folders

pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")

FACE = Path(__file__).resolve().parents[2] / "examples" / "face.png"
SCRIPT = "from lowdim_cli.main import script; script()"


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
    tag = upload_folder._host_tag()
    shared.mkdir()
    left = shared / f"{upload_folder.PREFIX}{tag}-{int(dead.stdout)}-abc"  # a second Ctrl-C's quit at once
    live = shared / f"{upload_folder.PREFIX}{tag}-{os.getpid()}-def"
    elsewhere = shared / f"{upload_folder.PREFIX}00000000-{int(dead.stdout)}-ghi"  # another machine's
    hashes = shared / "4555be98aa"  # a Gradio server's own, not lowdim's
    for folder in (left, live, elsewhere, hashes):
        folder.mkdir()
        (folder / "face.png").write_bytes(b"photo")
    assert remove_dead_servers_folders(shared) == [left]
    with private_uploads():
        pass
    assert sorted(path.name for path in shared.iterdir()) == sorted(path.name for path in (live, elsewhere, hashes))


def upload(port: int, photo: Path) -> Path:
    """Upload ``photo`` as the page's file control does; the path the server keeps it at."""
    body = (b"--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"face.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" + photo.read_bytes() + b"\r\n--b--\r\n")
    sent = urllib.request.Request(f"http://127.0.0.1:{port}/gradio_api/upload", body,
                                  {"Content-Type": "multipart/form-data; boundary=b"})
    with urllib.request.urlopen(sent, timeout=60) as answer:
        [path] = json.loads(answer.read())
    return Path(path)


def start_server(tmp_path: Path, name: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", SCRIPT, "ui", "--model", "tinyfaces", "--port", str(port),
                                "--out", str(tmp_path / name)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)
    deadline, line = time.time() + 120, ""
    while "serving on" not in line:
        assert process.poll() is None and time.time() < deadline, process.communicate()
        line = process.stdout.readline()
    return process, port


@pytest.mark.slow
def test_a_closing_server_leaves_another_servers_upload_of_the_same_photo(tmp_path, shared):
    servers = [start_server(tmp_path, name) for name in ("a", "b")]
    try:
        kept = [upload(port, FACE) for _, port in servers]
        assert kept[0] != kept[1] and all(path.is_file() for path in kept)
        for index, (process, _) in enumerate(servers):
            process.send_signal(signal.SIGINT)
            assert process.wait(60) == 130
            if index == 0:  # still there for the second server's Personalize
                assert not kept[0].exists() and kept[1].read_bytes() == FACE.read_bytes()
    finally:
        for process, _ in servers:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=30)
    assert list(shared.glob(f"{upload_folder.PREFIX}*")) == []  # each server's folder went with it
