"""A Ctrl-C or SIGTERM that lands while a library imports lazily (diffusers wraps the KeyboardInterrupt in an
ImportError, then a RuntimeError) is still the stop: status 130 and the one interrupt line, no traceback."""

from __future__ import annotations

import pytest

from lowdim_cli.main import main
from lowdim_sd import stopping


def _wrapped_stop(*args, **kwargs):
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as stop:
            raise ImportError("initialization failed") from stop
    except ImportError as error:
        raise RuntimeError("Failed to import diffusers.pipelines.onnx_utils because of the following error "
                           "(look up to see its traceback):") from error


def _implicitly_chained_stop(*args, **kwargs):
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        raise ImportError("initialization failed")  # noqa: B904  no `from`: the stop is its __context__ only


def _unchained_after_a_signal(*args, **kwargs):
    stopping.ask()  # the handler's flag, set before its KeyboardInterrupt was lost inside the import
    raise ImportError("initialization failed")


@pytest.mark.parametrize("raising", [_wrapped_stop, _implicitly_chained_stop, _unchained_after_a_signal])
def test_a_stop_wrapped_by_a_library_exits_130_with_one_line(monkeypatch, tmp_path, capsys, raising):
    monkeypatch.setattr("lowdim_sd.hypertrain.train_hypernet", raising)
    code = main(["train-hypernet", "-w", str(tmp_path), "-o", str(tmp_path / "h"), "--encoder-config", "tiny"])
    err = capsys.readouterr().err
    assert code == 130 and "Interrupted." in err and "Traceback" not in err
    stopping.withdraw()


def test_a_library_error_without_a_stop_keeps_its_traceback(monkeypatch, tmp_path):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("lowdim_sd.hypertrain.train_hypernet", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["train-hypernet", "-w", str(tmp_path), "-o", str(tmp_path / "h"), "--encoder-config", "tiny"])
