"""``serve(...)``, the Python entry of ``lowdim ui`` (a notebook's cell), takes ``out`` as a str as the jobs do, and
anything else is one line before any port is taken (review AK4)."""

from __future__ import annotations

import urllib.request

import pytest
from local_port import free_port  # tests/sd, on the path as pytest puts it

from lowdim.errors import LowdimError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing")
pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")


def test_out_as_a_str_serves_and_keeps_runs_there(tmp_path, monkeypatch, capsys):
    from lowdim_cli.ui_command import serve

    monkeypatch.chdir(tmp_path)
    port, answered = free_port(), []

    def ready(page) -> None:
        with urllib.request.urlopen(f"http://127.0.0.1:{page.server_port}/", timeout=30) as response:
            answered.append(response.status)

    serve("127.0.0.1", port, "tinyfaces", "uiruns", False, None, "auto", "auto", ready=ready)
    assert answered == [200]
    assert f"serving on http://127.0.0.1:{port} (Ctrl-C stops it); runs are kept in uiruns" in capsys.readouterr().out


def test_out_of_another_type_is_one_line():
    from lowdim_cli.ui_command import serve

    with pytest.raises(LowdimError) as caught:
        serve("127.0.0.1", free_port(), "tinyfaces", 7, False, None, "auto", "auto")
    assert str(caught.value) == "serve: out= takes a path (a str or Path), got a int"
