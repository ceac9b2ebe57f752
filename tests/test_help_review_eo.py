"""--help that can be copied as printed, and runs that end with the next command (review EO 1, 4-8, 10, 11).

No word of the plain layout is cut in two; -h is --help everywhere; every example line parses with its command's
own options and arguments; usage lines write an argument as FILE, not typer 0.29's {FILE}; one option reads the same
in every command; train and merge end with the line that draws what they wrote.
"""

from __future__ import annotations

import re
import shlex

import pytest
import typer.main
from test_cli_help_values import every_command  # tests/, on the path as pytest puts it

from lowdim_cli.main import app, main


def help_of(capsys, monkeypatch, *path: str, columns: int = 80, flag: str = "--help") -> str:
    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.delenv("TERMINAL_WIDTH", raising=False)
    assert main([*path, flag]) == 0, path
    return capsys.readouterr().out


@pytest.mark.parametrize("columns", [60, 80])
def test_a_long_value_in_the_plain_help_overflows_rather_than_splits(capsys, monkeypatch, columns):
    text = help_of(capsys, monkeypatch, "bench", "quality", columns=columns)
    assert "tinyfaces-identity,tinyfaces-image,tinyfaces-style)." in text.split()
    assert "ours-described-styles@te=0@start=0.2@end=0.8." in text.split()
    # Every word is one the help holds whole at 200 columns (rich's layout, one line per option's help): a cut
    # word's pieces are not (the plain layout's own words aside: "-m," and "Options:").
    whole = set(help_of(capsys, monkeypatch, "bench", "quality", columns=200).split())
    cut = {word for word in text.split() if word not in whole and not re.fullmatch(r"-\w,|Options:", word)}
    assert not cut, f"at {columns} columns"


def test_h_is_help_for_the_root_and_every_command_and_group(capsys, monkeypatch):
    for path in [[], *every_command()]:
        assert help_of(capsys, monkeypatch, *path, flag="-h").startswith("Usage: lowdim"), path


def test_no_command_takes_h_for_anything_else():
    taken = {" ".join(path): param.opts for path in every_command()
             for param in getattr(command_at(path), "params", []) if "-h" in param.opts + param.secondary_opts}
    assert not taken


def command_at(path: list[str]):
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return command


def example_lines(text: str) -> list[str]:
    """The `lowdim ...` commands of a help's description: lines that are one, or an `Example:` line's."""
    description = re.sub(r"\\\s*\n\s*", " ", text.split("Options")[0])  # a shell's continued line, as one
    found = []
    for line in description.splitlines():
        line = line.strip(" │")
        match = re.search(r"(?:^|Examples?(?: \([^)]*\))?: )(lowdim .*)", line)
        if match:
            found.append(match[1].rstrip())
    return found


def check_example(example: str) -> None:
    """The example parses with its command's own options and arguments: no option it lacks, no extra word."""
    try:
        words = shlex.split(example)[1:]
    except ValueError as error:  # a quote the line does not close: the rest is on the next line
        raise AssertionError(f"{example!r}: {error}") from None
    command = typer.main.get_command(app)
    while words and words[0] in getattr(command, "commands", {}):
        command = command.commands[words.pop(0)]
    assert not hasattr(command, "commands"), f"{example!r} names no command"
    try:
        command.make_context("lowdim", list(words))
    except Exception as error:  # click's errors, of typer's own copy of click
        said = str(getattr(error, "message", error))
        if type(error).__name__ in ("NoSuchOption", "BadOptionUsage", "MissingParameter") or "extra argument" in said:
            raise AssertionError(f"{example!r}: {type(error).__name__}: {said}") from None


@pytest.mark.parametrize("columns", [80, 200])
def test_every_example_line_parses_with_the_commands_options(capsys, monkeypatch, columns):
    checked, failed = [], []
    for path in [[], *every_command()]:
        for example in example_lines(help_of(capsys, monkeypatch, *path, columns=columns)):
            try:
                check_example(example)
            except AssertionError as error:
                failed.append(str(error))
            checked.append(example)
    assert not failed, "\n".join(failed)
    assert any(e.startswith("lowdim show ") for e in checked) and any(e.startswith("lowdim ui") for e in checked)
    assert sum(e.startswith("lowdim train ") for e in checked) >= 4, checked


def test_examples_sit_one_a_line(capsys, monkeypatch):
    show = example_lines(help_of(capsys, monkeypatch, "show", columns=60))
    assert "lowdim show me/adapter.safetensors" in show and "lowdim show tinyfaces" in show
    train = help_of(capsys, monkeypatch, "train", columns=80)
    assert "# LiDB, 400 steps" in train and "lowdim train -m tinyfaces -i face.png --out me-lidb\n" in train


def test_usage_lines_write_an_argument_bare(capsys, monkeypatch):
    assert "Usage: lowdim show [OPTIONS] FILE\n" in help_of(capsys, monkeypatch, "show")
    for path in every_command():
        usage = help_of(capsys, monkeypatch, *path).splitlines()[0]
        assert "{" not in usage, usage


def option_help(path: list[str], flag: str):
    return next(param for param in command_at(path).params if flag in param.opts)


def test_checkpoint_every_says_what_0_keeps_in_each_command():
    train = option_help(["train"], "--checkpoint-every").help
    hypernet = option_help(["train-hypernet"], "--checkpoint-every").help
    assert "(0: never)" not in train and "last step" in train and "--resume" in train
    assert "0: none" in hypernet and "last step" not in hypernet


def test_model_config_reads_the_same_in_every_command():
    taking = [path for path in every_command() if any("--model-config" in p.opts for p in command_at(path).params)]
    assert ["inspect"] in taking and ["train"] in taking and ["bench", "quality"] in taking
    options = [option_help(path, "--model-config") for path in taking]
    assert {option.metavar for option in options} == {"FOLDER"}
    shared = option_help(["train"], "--model-config").help
    assert all(option.help.startswith(shared) for option in options), {o.help for o in options}


def test_out_takes_the_same_word_everywhere(capsys, monkeypatch):
    words = {}
    for path in every_command():
        match = re.search(r"-o, --out (\w+)", help_of(capsys, monkeypatch, *path))
        if match:
            words[" ".join(path)] = match[1]
    assert "export" in words and "merge" in words
    assert set(words.values()) == {"PATH"}, words


@pytest.mark.parametrize(("path", "flag", "default"), [(["train"], "--rank", "4"), (["generate"], "--seed", "0")])
def test_defaults_show_as_default(capsys, monkeypatch, path, flag, default):
    row = " ".join(help_of(capsys, monkeypatch, *path, columns=80).split(f"  {flag} ")[1].split("\n  -")[0].split())
    assert f"[default: {default}]" in row and "(default" not in row, row


def test_precompute_model_help_names_a_file(capsys, monkeypatch):
    assert option_help(["precompute"], "--model").help.endswith("a .safetensors file.")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eo")
    assert main(["tinyfaces-identities", "-o", str(folder / "faces"), "--count", "1", "--split", "test"]) == 0
    return folder


def test_train_ends_with_personalizes_draw_line(trained, capsys):
    out = trained / "me"
    assert main(["train", "-m", "tinyfaces", "-i", str(trained / "faces" / "id-00000.png"), "-o", str(out),
                 "--steps", "2"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    adapter = out / "adapter.safetensors"
    assert last == f"draw it: lowdim generate -m tinyfaces -a {shlex.quote(str(adapter))} -p 'a [V] face at night'"
    from lowdim_cli.sd_commands import print_next_command

    print_next_command([adapter], "my model.safetensors", "tinyfaces")  # carried as personalize carries it
    assert "-m 'my model.safetensors' --model-config tinyfaces -a" in " ".join(capsys.readouterr().out.split())


def test_merge_ends_with_shows_use_line(trained, capsys):
    from lowdim_sd.file_info import describe

    adapter = trained / "me" / "adapter.safetensors"
    if not adapter.exists():
        assert main(["train", "-m", "tinyfaces", "-i", str(trained / "faces" / "id-00000.png"), "-o",
                     str(trained / "me"), "--steps", "2"]) == 0
    merged = trained / "me-tf.safetensors"
    capsys.readouterr()
    assert main(["merge", "-m", "tinyfaces", "-a", str(adapter), "-o", str(merged)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == f"use it: {describe(merged).use}" and last.startswith(f"use it: lowdim generate -m {merged}")
