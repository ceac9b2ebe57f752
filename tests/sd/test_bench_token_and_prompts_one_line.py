"""`lowdim bench quality` draws every prompt with its token put in for [V], captions gallery.png with the prompts,
and records both in settings.json, which a resume compares and a tabulation reads back. A prompt or token holding a
newline (or an escape, a NUL: any control character) would split a caption or a line of the run's output, and a
token of two words would draw each prompt with two: each is refused in one line naming the setting and showing the
value escaped and cut short, exit 1, before any model is built or anything written; a settings.json recording one
(edited by hand) is refused the same way, on --no-run and on a resume alike (FBX)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd.bench.quality import QualityJob, check_job, run_quality

# Not one line of text: what a prompt may not hold. Shown escaped, as Python's repr shows them.
NOT_ONE_LINE = {
    "a newline": "a [V] face\nat night",
    "a carriage return": "a [V] face\rat night",
    "a tab": "a [V] face\tat night",
    "an escape": "a [V] face \x1b[31mat night",
    "a NUL": "a [V] face\x00",
    "a line separator": "a [V] face\u2028at night",
}
# Not one word: what a token may not be, besides the above.
NOT_ONE_WORD = {**NOT_ONE_LINE, "two words": "sks person", "empty": "", "a leading space": " sks"}
MOST = 200  # no line quoting a value is longer than this, however long the value


@pytest.fixture
def model_never_built(monkeypatch):
    """The refusal comes before any model loads: building one fails the test."""
    import lowdim_sd.loading

    monkeypatch.setattr(lowdim_sd.loading, "load_sd", lambda *args, **kwargs: pytest.fail("a model was built"))


@pytest.fixture
def identities(tmp_path) -> Path:
    folder = tmp_path / "identities"
    folder.mkdir()
    Image.new("RGB", (16, 16)).save(folder / "id-0.png")
    return folder


def one_line_error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("Warning:")]
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("prompt", NOT_ONE_LINE.values(), ids=NOT_ONE_LINE.keys())
def test_a_prompt_flag_of_more_than_one_line_is_one_line_naming_it(identities, tmp_path, capsys, model_never_built,
                                                                   prompt):
    out = tmp_path / "bench"
    command = ["bench", "quality", "-i", str(identities), "-o", str(out), "--methods", "base",
               "--prompt", "a [V] face", "--prompt", prompt]
    assert main(command) == 1
    line = one_line_error(capsys)
    assert line.startswith(f"Error: --prompt is {prompt!r}, not one line"), line
    assert not out.exists()


def test_a_huge_prompt_is_quoted_cut_short(identities, tmp_path, capsys, model_never_built):
    prompt = "a [V] face\n" + "x" * 5000
    assert main(["bench", "quality", "-i", str(identities), "-o", str(tmp_path / "bench"), "--methods", "base",
                 "--prompt", prompt]) == 1
    line = one_line_error(capsys)
    assert line.startswith("Error: --prompt is 'a [V] face\\nxxx") and len(line) < MOST, line


@pytest.mark.parametrize("token", NOT_ONE_WORD.values(), ids=NOT_ONE_WORD.keys())
def test_a_token_that_is_no_one_word_is_refused_naming_it(identities, tmp_path, model_never_built, token):
    job = QualityJob(identities=identities, out=tmp_path / "bench", methods=["base"], token=token)
    with pytest.raises(LowdimError) as refused:
        run_quality(job)
    message = str(refused.value)
    assert message.startswith(f"QualityJob(token=...) is {token!r}") and "\n" not in message, message
    assert not (tmp_path / "bench").exists()


def test_a_prompt_of_more_than_one_line_from_python_names_the_parameter(identities, tmp_path):
    job = QualityJob(identities=identities, out=tmp_path / "bench", methods=["base"], prompts=["a [V]\nface"])
    with pytest.raises(LowdimError, match=r"^QualityJob\(prompts=\.\.\.\) is 'a \[V\]\\nface'"):
        check_job(job)


def test_a_token_and_prompts_of_letters_of_any_language_are_taken(identities, tmp_path):
    job = QualityJob(identities=identities, out=tmp_path / "bench", methods=["base"], token="ŝkš",
                     prompts=["ein [V] Gesicht bei Nacht – „Jürgen's“", "一张[V]的脸"])
    check_job(job)
    assert job.prompts == ["ein [V] Gesicht bei Nacht – „Jürgen's“", "一张[V]的脸"] and job.token == "ŝkš"


# -------------------------------------------------------------------- a settings.json recording one, edited


@pytest.fixture
def quality_out(tmp_path):
    from test_bench_results_checked import results_folder  # tests/sd: a results folder as a run writes it

    return results_folder(tmp_path)


def edit_settings(out: Path, **values) -> Path:
    path = out / "settings.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **values}))
    return path


def resume(out: Path, identities: Path) -> int:
    stored = json.loads((out / "settings.json").read_text())
    command = ["bench", "quality", "-i", str(identities), "-o", str(out), "--methods", "base",
               "--metrics", ",".join(stored["metrics"]), "--sample-steps", str(stored["sample_steps"])]
    for prompt in stored["prompts"]:
        command += ["--prompt", prompt if prompt.isprintable() else "a [V] face"]
    return main(command)


def tabulate(out: Path, identities: Path) -> int:
    return main(["bench", "quality", "-o", str(out), "--no-run"])


STORED = {
    **{f"token {name}": ("token", value) for name, value in NOT_ONE_WORD.items() if value},  # empty: as before
    **{f"a prompt with {name}": ("prompts", ["a [V] face", value]) for name, value in NOT_ONE_LINE.items()},
}


@pytest.mark.parametrize(("key", "value"), STORED.values(), ids=STORED.keys())
@pytest.mark.parametrize("command", [tabulate, resume], ids=["--no-run", "a resume"])
def test_a_stored_token_or_prompt_not_of_one_line_is_one_line_naming_settings_json(
        quality_out, identities, capsys, model_never_built, key, value, command):
    path = edit_settings(quality_out, **{key: value})
    assert command(quality_out, identities) == 1
    line = one_line_error(capsys)
    shown = repr(value) if key == "token" else f"{value[1]!r}"
    assert line.startswith(f"Error: {path}: damaged (") and shown in line, line
    assert not (quality_out / "table.md").exists() and not (quality_out / "table.json").exists()


def test_a_stored_folder_of_one_line_prompts_and_a_one_word_token_is_still_tabulated(quality_out, identities, capsys):
    edit_settings(quality_out, token="ŝkš", prompts=["ein [V] Gesicht", "一张[V]的脸"])
    assert tabulate(quality_out, identities) == 0, capsys.readouterr().err
    assert json.loads((quality_out / "table.json").read_text())["settings"]["token"] == "ŝkš"


@pytest.mark.parametrize("methods", ["ours\nx", "base,only-hyper\x1b[31m", "base@0.5\x1b[31m"],
                         ids=["unknown", "unknown among known", "a row with no file, drawn"])
def test_a_methods_name_of_more_than_one_line_is_named_escaped_in_one_line(quality_out, identities, capsys, methods):
    """A row's name is a table row's heading: one holding a control character is no row, and its refusal names it
    escaped, in one line."""
    assert main(["bench", "quality", "-o", str(quality_out), "--no-run", "--methods", methods]) == 1
    line = one_line_error(capsys)
    assert repr(methods.split(",")[-1])[1:-1] in line, line
