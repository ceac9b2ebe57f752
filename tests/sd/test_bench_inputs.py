"""What `lowdim bench` makes of what it is given: `speed --no-run` takes the settings OUT was measured with, and
`quality --methods` says why a row name is not one. Nothing here measures or trains: each is a one-line answer."""

from __future__ import annotations

import json
import re

import pytest

from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd.bench.methods import get_method, parse_methods
from lowdim_sd.bench.speed import Store
from lowdim_sd.bench.speed_setup import resolve_settings
from lowdim_sd.draw_parts import DRAW_SETTING


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.fixture
def quick_out(tmp_path):
    """An OUT as `bench speed --quick --device cpu` leaves it (one measurement stored): no model is built."""
    out = tmp_path / "speed-ci"
    store = Store(out)
    store.claim(resolve_settings(True, "cpu", "auto", None, None), overwrite=False)
    store.save("load", {"label": "model load", "seconds": 1.0, "samples": [1.0]})
    return out


def speed(out, *flags) -> int:
    return main(["bench", "speed", "-o", str(out), *flags])


def test_speed_no_run_alone_tabulates_with_the_settings_out_was_measured_with(quick_out, capsys):
    before = (quick_out / "settings.json").read_text()
    assert speed(quick_out, "--no-run") == 0, capsys.readouterr().err
    report = json.loads((quick_out / "speed.json").read_text())
    assert report["settings"] == {"scale": "quick", "device": "cpu", "dtype": "fp32", "resolution": 16, "repeats": 2}
    assert report["measurements"]["load"]["seconds"] == 1.0
    assert (quick_out / "settings.json").read_text() == before  # tabulating claims nothing
    assert speed(quick_out, "--no-run", "--quick", "--device", "cpu", "--dtype", "fp32", "--resolution", "16",
                 "--repeats", "2") == 0  # flags that agree with OUT are welcome


@pytest.mark.parametrize("flags, named", [(["--resolution", "32"], "--resolution 32"),
                                          (["--repeats", "7", "--dtype", "bf16"], "--dtype bf16, --repeats 7")])
def test_speed_no_run_with_a_flag_contradicting_out_is_one_line_without_refused_advice(quick_out, capsys, flags,
                                                                                       named):
    assert speed(quick_out, "--no-run", *flags) == 1
    line = one_line_error(capsys)
    assert named in line and "scale quick, device cpu, dtype fp32, resolution 16, repeats 2" in line
    assert "--overwrite" not in line  # refused beside --no-run, so never advised with it
    assert not (quick_out / "speed.json").exists()


def test_speed_refusal_of_other_settings_advises_only_what_works(quick_out, capsys):
    assert speed(quick_out, "--quick", "--device", "cpu", "--resolution", "24") == 1
    line = one_line_error(capsys)
    assert "resolution 16 -> 24" in line and "--overwrite to drop them" in line and "--no-run alone" in line
    assert speed(quick_out, "--no-run") == 0  # the advice it gives, taken as given


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"scale": "huge"}'])
def test_speed_no_run_on_a_damaged_settings_file_is_one_line_naming_it(quick_out, capsys, text):
    (quick_out / "settings.json").write_text(text)
    assert speed(quick_out, "--no-run") == 1
    line = one_line_error(capsys)
    assert str(quick_out / "settings.json") in line and "damaged" in line


# The draw settings as the parser reads them ('te', 'start', ...), so a setting added there is checked here too.
DRAW_KEYS = re.search(r"\(([a-z|]+)\)=", DRAW_SETTING.pattern).group(1).split("|")


def test_the_draw_keys_are_read_from_the_parser():
    assert DRAW_KEYS == ["te", "start", "end", "ca"]


@pytest.mark.parametrize("ask", [parse_methods, get_method])
def test_an_unknown_draw_setting_lists_every_form_the_parser_reads(ask):
    with pytest.raises(LowdimError, match=r"unknown method.*only-hyper@foo=1") as error:
        ask("only-hyper@foo=1")
    assert "ROW@S" in str(error.value)
    for key in DRAW_KEYS:
        assert f"{key}=" in str(error.value), key


@pytest.mark.parametrize("ask", [parse_methods, get_method])
@pytest.mark.parametrize("name, row", [("dreambooth@0.5", "dreambooth"), ("db-agg-1@te=0", "db-agg-1"),
                                       ("base@0.5", "base"), ("base-described@end=0.8", "base-described")])
def test_a_row_without_an_adapter_file_says_so_when_drawn_another_way(ask, name, row):
    with pytest.raises(LowdimError) as error:
        ask(name)
    message = str(error.value)
    assert "unknown method" not in message
    assert f"'{name}'" in message and f"{row} " in message and "no adapter file to draw" in message
    assert "ours" in message  # the rows that can be drawn are named


def test_the_command_says_both_in_one_line(tmp_path, identities, capsys):
    for methods, says in (("only-hyper@foo=1", "ca=C"), ("dreambooth@0.5", "no adapter file to draw")):
        code = main(["bench", "quality", "-i", str(identities), "--methods", methods, "-o", str(tmp_path / "o")])
        assert code == 1
        assert says in one_line_error(capsys)
    assert not (tmp_path / "o").exists()
