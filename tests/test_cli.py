"""The ``lowdim`` command: numbers users rely on, JSON output, and one-line errors."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

from lowdim_cli.main import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_inspect_reports_the_papers_lidb_count_on_sd15(capsys):
    code, out, _ = run(capsys, "inspect", "--model", "sd15", "--space", "lidb", "--json")
    assert code == 0
    report = json.loads(out)
    total = report["groups"][-1]
    assert (total["layers"], total["params"], total["bytes_fp32"]) == (176, 26_400, 105_600)
    groups = {g["group"]: g["layers"] for g in report["groups"][:-1]}
    assert groups == {"unet self-attention": 64, "unet cross-attention": 64, "text encoder attention": 48}
    assert report["file_bytes"]["fp16"] <= 60_000


def test_inspect_lora_rank_1_and_options(capsys):
    code, out, _ = run(capsys, "inspect", "-m", "sd15", "-s", "lora", "--json", "--no-files")
    assert code == 0 and json.loads(out)["groups"][-1]["params"] == 273_024
    code, out, _ = run(capsys, "inspect", "-m", "sd15", "-s", "lidb", "--set", "a=10", "--set", "b=5",
                       "--layers", "text", "--no-files")
    assert code == 0
    assert "720" in out  # 48 text layers x (10 + 5)
    assert "text encoder attention" in out and "unet" not in out.split("layer set")[1]


def test_spaces_lists_builtins_and_plugins(capsys):
    code, out, _ = run(capsys, "spaces", "--verbose")
    assert code == 0
    for name in ("lora", "lidb", "stack", "vera", "aux_scale"):
        assert name in out


def table_rows(out: str) -> dict[str, list[str]]:
    """A rich table's rows by their first cell (rows of one line each: a wide terminal)."""
    rows = [[cell.strip() for cell in line.strip().strip("│").split("│")] for line in out.splitlines()]
    return {cells[0]: cells[1:] for cells in rows if len(cells) >= 3}


def test_spaces_and_models_name_the_plugin_each_came_from(capsys, monkeypatch):
    import types

    import lowdim
    from lowdim.hookspecs import hookimpl
    from lowdim_sd.plugin import SDBackend

    monkeypatch.setenv("COLUMNS", "250")
    code, out, _ = run(capsys, "spaces")
    assert code == 0 and table_rows(out)["vera"][0] == "vera" and table_rows(out)["lidb"][0] == "builtin"
    plugin = types.ModuleType("faces_plugin")
    faces = SDBackend("faces", "some/faces", aliases=("fc",))
    plugin.register_backends = hookimpl(lambda register: register(faces))
    with lowdim.use_registry(lowdim.Registry.from_plugins(["lowdim.spaces.builtin", "lowdim_sd.plugin", plugin])):
        code, out, _ = run(capsys, "models")
    assert code == 0
    assert table_rows(out)["faces"][:2] == ["faces_plugin", "fc"]
    assert table_rows(out)["sd15"][0] == "builtin"  # lowdim's own SD backend, as its own spaces are


def test_models_lists_every_backend_whole_on_a_narrow_terminal(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run(capsys, "models")
    assert code == 0 and "sd15" in out and "tinyfaces" in out
    assert "…" not in out  # a long hub id wraps inside its cell instead of being cut
    cells = "".join(line.split("│")[-2].strip() for line in out.splitlines() if line.count("│") == 6)
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in cells


@pytest.mark.parametrize("args, message", [
    (["inspect", "-m", "sd15", "-s", "nope", "--no-files"], "unknown space 'nope'; known: lidb, lora, stack"),
    (["inspect", "-m", "sd15", "-s", "lroa", "--no-files"], "unknown space 'lroa'; did you mean lora? known: lidb"),
    (["inspect", "-m", "sd99", "-s", "lidb", "--no-files"], "unknown model 'sd99'"),
    (["inspect", "-m", "sd15", "-s", "lidb", "--set", "a=0", "--no-files"], "lidb: a must be an integer >= 1"),
    (["inspect", "-m", "sd15", "-s", "lidb", "--set", "a", "--no-files"], "--set expects KEY=VALUE"),
    (["inspect", "-m", "sd15", "-s", "lidb", "-l", "unet.*.attn9.to_q", "--no-files"], "matches no"),
])
def test_user_mistakes_print_one_line_and_exit_1(capsys, args, message):
    code, out, err = run(capsys, *args)
    assert code == 1
    assert message in " ".join(err.split())
    assert "Traceback" not in err + out


def test_the_installed_script_exits_non_zero_without_a_traceback():
    result = subprocess.run([sys.executable, "-m", "lowdim_cli.main", "inspect", "-m", "sd15", "-s", "zzz"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: unknown space 'zzz'")
    assert "Traceback" not in result.stderr


def without_modules(blocked: list[str], *args: str) -> subprocess.CompletedProcess:
    """The CLI in a fresh interpreter where ``blocked`` cannot be imported, as on a core-only install."""
    code = (f"import sys; sys.modules.update(dict.fromkeys({blocked!r})); from lowdim_cli.main import main; "
            f"sys.exit(main({list(args)!r}))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_a_command_whose_extra_is_missing_names_the_install_in_one_line():
    result = without_modules(["PIL", "diffusers"], "personalize", "-m", "sd15", "-i", "face.png")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    # (a line before it may warn that a plugin needing those modules was skipped when the registry was built)
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: this command needs the sd extra, and PIL is not installed: pip install 'lowdim[sd]'")


@pytest.mark.skipif(importlib.util.find_spec("typer._click") is None, reason="this typer runs on click itself")
def test_the_core_commands_run_without_click_which_newer_typers_vendor():
    result = without_modules(["click"], "spaces")
    assert result.returncode == 0 and "lidb" in result.stdout, result.stderr
    result = without_modules(["click"], "spaces", "--no-such-option")
    assert result.returncode == 2 and "No such option" in result.stderr and "Traceback" not in result.stderr


def test_a_missing_module_that_is_no_extra_is_a_bug_and_keeps_its_traceback():
    from lowdim_cli.errors import missing_extra

    assert missing_extra(ModuleNotFoundError("No module named 'lowdim_typo'", name="lowdim_typo")) is None
    assert "lowdim[faces]" in missing_extra(ModuleNotFoundError("No module named 'dlib'", name="dlib"))


def test_help_prose_is_reflowed_and_examples_keep_their_lines():
    from lowdim_cli.errors import reflow

    doc = """First line
        continues here.

        Second paragraph,
        two lines.

          lowdim example --one
          lowdim example --two
        """
    assert reflow(doc) == ("First line continues here.\n\nSecond paragraph, two lines.\n\n"
                           "  lowdim example --one\n  lowdim example --two")
    assert reflow(None) is None


def test_a_command_help_joins_the_lines_of_its_docstring(capsys):
    import typer

    from lowdim_cli.main import app

    assert main(["encoder-features", "--help"]) == 0  # commands are wrapped (and their help reflowed) by now
    command = typer.main.get_command(app).commands["encoder-features"]
    assert "for each training image. This writes it, keyed by" in command.help  # one line in the source's two


@pytest.mark.parametrize("environ, load, expected", [
    ({}, 0.0, None),                                        # idle: OpenMP's own spinning is 2x faster on small ops
    ({}, 1.0, "PASSIVE"),                                   # another job holds a core: spinning waiters stall
    ({"OMP_WAIT_POLICY": "ACTIVE"}, 3.0, None),             # the user's choice is kept
    ({}, None, None),                                       # no load average on this platform
])
def test_openmp_waiters_sleep_only_on_a_busy_machine(environ, load, expected):
    from lowdim_cli import omp_wait_policy

    assert omp_wait_policy(environ, load) == expected


BUSY_PROBE = (  # lowdim_cli imported while /proc/loadavg reports 8 other running threads
    "import os, pathlib\n"
    "read = pathlib.Path.read_text\n"
    "pathlib.Path.read_text = lambda self, *a, **k: ('1.0 1.0 1.0 9/300 1' if str(self) == '/proc/loadavg'\n"
    "                                               else read(self, *a, **k))\n"
    "import lowdim_cli\n"
    "print(os.environ.get('OMP_WAIT_POLICY'))\n")


@pytest.mark.parametrize(("users", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_importing_the_command_on_a_busy_machine_sleeps_waiters_unless_the_user_chose(users, expected):
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    if users is not None:
        env["OMP_WAIT_POLICY"] = users
    chosen = subprocess.run([sys.executable, "-c", BUSY_PROBE], env=env, capture_output=True, text=True,
                            check=True).stdout.strip()
    assert chosen == expected


def test_bench_workers_are_spawned_with_sleeping_waiters_and_the_setting_is_undone(monkeypatch):
    from lowdim_sd.bench.workers import sleeping_waiters

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    with sleeping_waiters():
        assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    assert "OMP_WAIT_POLICY" not in os.environ
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    with sleeping_waiters():
        assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_bench_threads_apply_in_process_too(monkeypatch):
    from types import SimpleNamespace

    import torch

    from lowdim_sd.bench.workers import run_tasks

    before = torch.get_num_threads()

    class Job:
        workers, threads = 1, before + 1  # not the count the suite runs with, so only run_tasks can set it

    seen = []
    try:
        task = SimpleNamespace(method="base", identity="id-00000")
        run_tasks(Job(), [task], lambda job, task: seen.append(torch.get_num_threads()))
    finally:
        torch.set_num_threads(before)
    assert seen == [before + 1]


def test_version_names_lowdim_its_plugins_and_the_libraries_a_bug_report_needs(capsys):
    from importlib.metadata import version

    code, out, err = run(capsys, "--version")
    assert code == 0 and not err
    lines = out.splitlines()
    assert lines[0] == f"lowdim {version('lowdim')}"
    assert f"lowdim-tinyfaces {version('lowdim-tinyfaces')}" in lines[1] and "lowdim-vera" in lines[1]
    assert "lowdim " not in lines[1].removeprefix("plugins: ")  # lowdim's own entry point is no plugin of it
    assert f"torch {version('torch')}" in lines[2] and f"diffusers {version('diffusers')}" in lines[2]
    assert run(capsys, "--version", "generate")[0] == 0  # eager: answered before any command parses


FAST_PATH_SCRIPT = """
import contextlib, io, sys
import typer.main
from lowdim_cli.main import _add_plugin_commands, app, main

_add_plugin_commands()
paths = [[]]
def walk(command, path):
    for name, sub in getattr(command, "commands", {}).items():
        paths.append([*path, name])
        walk(sub, [*path, name])
walk(typer.main.get_command(app), [])
runs = [[*path, "--help"] for path in paths] + [[], ["personalize"], ["no-such-command"], ["train", "--no-such-option"],
                                                ["--version"], ["models"]]
for args in runs:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        main(args)
print(len(runs), sorted(name for name in ("torch", "numpy", "PIL", "diffusers", "transformers") if name in sys.modules))
"""


def test_help_and_usage_errors_load_no_torch():
    """`lowdim --help`, every command's --help (plugins' too), usage errors and `lowdim models` answer in a fraction
    of a second: torch alone takes seconds to import, and nothing there needs it."""
    result = subprocess.run([sys.executable, "-c", FAST_PATH_SCRIPT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    count, loaded = result.stdout.strip().split(" ", 1)
    assert int(count) > 20 and loaded == "[]", result.stdout


def test_python_dash_m_lowdim_is_the_command():
    result = subprocess.run([sys.executable, "-m", "lowdim", "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("lowdim "), result.stderr


@pytest.mark.parametrize(("command", "usage"), [
    ("export", "Usage: lowdim export [OPTIONS] ADAPTER"),
    ("eval", "Usage: lowdim eval [OPTIONS] FOLDER"),
    ("convert-encoder", "Usage: lowdim convert-encoder [OPTIONS] [ONNX_FILE]"),
])
def test_usage_lines_name_arguments_as_the_docs_do(command, usage, capsys):
    from lowdim_cli.main import main

    main([command, "--help"])
    assert usage in capsys.readouterr().out


@pytest.mark.parametrize(("typed", "offered"), [
    ("--stpes", "; did you mean --steps?"),
    ("--outt", "; did you mean --out?"),
    ("--bogus", ""),  # Click would offer --out: alike in letters, not a typo of it
])
def test_an_unknown_option_is_offered_only_the_options_a_typo_comes_from(typed, offered, capsys):
    from lowdim_cli.main import main

    code = main(["personalize", typed, "3"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and err.endswith(f"Error: No such option: {typed}{offered}") and "Possible options" not in err


def test_show_reads_an_adapter_header_without_the_sd_extra(tmp_path):
    """`show` describes a file from its header alone, so a core install (no PIL, diffusers, transformers) runs
    it, as it runs `export`."""
    import lowdim

    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    lowdim.inject(model, lowdim.get_space("lora", rank=1), ["0"], seed=0)
    lowdim.save_adapter(tmp_path / "a.safetensors", model)
    result = without_modules(["PIL", "diffusers", "transformers"], "show", str(tmp_path / "a.safetensors"))
    assert result.returncode == 0 and "lora" in result.stdout, result.stderr
