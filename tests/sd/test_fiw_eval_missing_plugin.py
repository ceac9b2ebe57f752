"""`lowdim eval` where lowdim-tinyfaces is not installed (review FG 2): pictures prompts.json says tinyfaces drew are
refused in one line naming the plugin, before any metric loads, rather than scored with the paper's four (whose
errors send the user after dlib and CLIP/DINO downloads that can't read 32 px anyway); `--metrics tinyfaces-identity`
names the plugin too. And the prompts file's errors state its format, which a wheel (no docs/) can't look up
(review FG 3)."""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from PIL import Image

import lowdim
from lowdim.plugins import BUILTIN_MODULES
from lowdim_cli.main import main
from lowdim_sd.eval import job as eval_job
from lowdim_sd.eval.paper_metrics import PAPER_METRICS

pytestmark = pytest.mark.usefixtures("app_as_it_was")  # main() under another registry adds its plugins' commands
PLUGIN_WORDS = ("the plugin lowdim-tinyfaces, which is not installed (pip install lowdim-tinyfaces; from a checkout, "
                "pip install -e plugins/lowdim-tinyfaces)")


def sd_without_tinyfaces() -> lowdim.Registry:
    """`pip install 'lowdim[sd]'` and not the plugin: lowdim's own modules and its sd plugin, no other."""
    return lowdim.Registry.from_plugins([*BUILTIN_MODULES, "lowdim_sd.plugin"])


def drawn_by(folder: Path, model: str) -> Path:
    """Two 32 px pictures and the prompts.json `lowdim generate -m MODEL` writes beside them."""
    folder.mkdir(parents=True)
    images = []
    for index in range(2):
        Image.new("RGB", (32, 32), (40 * index, 90, 140)).save(folder / f"00{index}.png")
        images.append({"image": f"00{index}.png", "prompt": "a photo of a [V] face", "seed": index})
    record = {"token": "sks", "images": images, "settings": {"model": model, "steps": 1}}
    (folder / "prompts.json").write_text(json.dumps(record), encoding="utf-8")
    return folder


def run(capsys, *args) -> tuple[int, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split())


@pytest.fixture
def asked(monkeypatch) -> list[tuple[str, ...]]:
    """The metric names eval went on to load; loading none, so that nothing downloads or reads a model."""
    names: list[tuple[str, ...]] = []

    def load_nothing(requested, *args, **kwargs):
        names.append(tuple(requested))
        return {}, {name: "not loaded in this test" for name in requested}

    monkeypatch.setattr(eval_job, "load_metrics", load_nothing)
    return names


def test_tinyfaces_pictures_without_the_plugin_are_refused_in_one_line_before_any_metric_loads(capsys, tmp_path,
                                                                                              asked):
    folder = drawn_by(tmp_path / "gen", "tinyfaces")
    reference = drawn_by(tmp_path / "refs", "tinyfaces") / "000.png"
    with lowdim.use_registry(sd_without_tinyfaces()):
        code, output = run(capsys, "eval", folder, "-r", reference, "--device", "cpu", "--no-progress")
    assert code == 1 and asked == []
    assert (f"Error: {folder / 'prompts.json'} says tinyfaces drew these pictures; its metrics come with "
            f"{PLUGIN_WORDS}") in output
    assert "dlib" not in output and "Traceback" not in output


def test_only_a_first_party_model_is_refused_an_unknown_one_keeps_the_papers_metrics(capsys, tmp_path, asked):
    with lowdim.use_registry(sd_without_tinyfaces()):
        refused, _ = run(capsys, "eval", drawn_by(tmp_path / "tf", "tinyfaces"), "--device", "cpu", "--no-progress")
        unknown, output = run(capsys, "eval", drawn_by(tmp_path / "other", "someone/some-model"), "--device", "cpu",
                              "--no-progress")
    assert refused == 1 and unknown == 1 and asked == [tuple(PAPER_METRICS)]  # the unknown model's: today's fallback
    assert "no metric could run" in output and "plugin" not in output


def test_a_typed_metrics_list_is_the_users_choice_and_is_not_refused(capsys, tmp_path, asked):
    with lowdim.use_registry(sd_without_tinyfaces()):
        refused, _ = run(capsys, "eval", drawn_by(tmp_path / "tf", "tinyfaces"), "--device", "cpu", "--no-progress")
        typed, _ = run(capsys, "eval", tmp_path / "tf", "--metrics", "clip-t", "--device", "cpu", "--no-progress")
    assert refused == 1 and typed == 1 and asked == [("clip-t",)]


def test_pictures_of_a_merge_of_tinyfaces_without_the_plugin_are_refused_naming_the_base(capsys, tmp_path, asked):
    merged = tmp_path / "merged"
    merged.mkdir()
    (merged / "lowdim_merge.json").write_text(json.dumps({"base_model": "tinyfaces"}), encoding="utf-8")
    folder = drawn_by(tmp_path / "gen", str(merged))
    with lowdim.use_registry(sd_without_tinyfaces()):
        code, output = run(capsys, "eval", folder, "--device", "cpu", "--no-progress")
    assert code == 1 and asked == []
    assert (f"says {merged} drew these pictures (a merge of tinyfaces, its record says); its metrics come with "
            f"{PLUGIN_WORDS}") in output


def test_with_the_plugin_installed_tinyfaces_pictures_get_its_metrics(capsys, tmp_path, asked):
    pytest.importorskip("lowdim_tinyfaces")
    refused = drawn_by(tmp_path / "tf", "tinyfaces")
    with lowdim.use_registry(sd_without_tinyfaces()):
        assert run(capsys, "eval", refused, "--device", "cpu", "--no-progress")[0] == 1
    code, _ = run(capsys, "eval", refused, "--device", "cpu", "--no-progress")
    assert code == 1 and asked == [eval_job.TINYFACES_METRICS]  # no metric loaded in this test: "could not run"


def test_a_first_party_metric_without_its_plugin_names_the_plugin(capsys, tmp_path):
    folder = drawn_by(tmp_path / "gen", "tinyfaces")
    with lowdim.use_registry(sd_without_tinyfaces()):
        code, output = run(capsys, "eval", folder, "--metrics", "tinyfaces-identity", "--device", "cpu",
                           "--no-progress")
        _, other = run(capsys, "eval", folder, "--metrics", "nope", "--device", "cpu", "--no-progress")
    assert code == 1
    assert (f"Error: unknown metric 'tinyfaces-identity': it comes with {PLUGIN_WORDS}; registered: clip-i, clip-t, "
            f"dino, face-rec") in output
    assert "Error: unknown metric 'nope'; registered: clip-i, clip-t, dino, face-rec" in other


def test_a_first_party_metric_with_plugins_switched_off_names_the_variable_not_an_install(monkeypatch):
    from lowdim_sd.eval.report import load_metrics

    monkeypatch.setenv("LOWDIM_NO_PLUGINS", "1")
    with lowdim.use_registry(lowdim.Registry.from_plugins()), \
            pytest.raises(lowdim.errors.LowdimError, match="LOWDIM_NO_PLUGINS is set") as raised:
        load_metrics(["tinyfaces-style"])
    assert "not installed" not in str(raised.value) and "lowdim-tinyfaces" in str(raised.value)


def test_the_first_party_metric_table_is_what_the_installed_plugins_register():
    from lowdim_sd.eval.report import FIRST_PARTY_METRICS

    pytest.importorskip("lowdim_tinyfaces")
    distribution = {point.name: point.dist.name for point in entry_points(group="lowdim") if point.dist}
    registered = {name: distribution[entry.plugin] for name, entry in lowdim.get_registry().metrics.items()
                  if distribution.get(entry.plugin, "lowdim") != "lowdim"}  # lowdim's own: always there
    assert registered == FIRST_PARTY_METRICS
    assert set(eval_job.TINYFACES_METRICS) == {name for name, plugin in registered.items()
                                               if plugin == "lowdim-tinyfaces"}


# -- review FG 3: the prompts file's format in the line itself ----------------------------------------------------


def format_example(message: str) -> str:
    """The prompts.json the error line shows, cut out of it."""
    start = message.index('{"images"')
    depth = 0
    for end, char in enumerate(message[start:], start):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            return message[start:end + 1]
    raise AssertionError(f"no whole JSON object in {message!r}")


@pytest.mark.parametrize("written", [None, '{"x": 1}'])
def test_a_missing_or_malformed_prompts_file_states_a_format_the_reader_accepts(tmp_path, written):
    from lowdim_sd.eval.prompts_file import EvalFolderError, read_prompts

    folder = tmp_path / "ev"
    folder.mkdir()
    if written is not None:
        (folder / "prompts.json").write_text(written, encoding="utf-8")
    with pytest.raises(EvalFolderError) as raised:
        read_prompts(folder)
    message = str(raised.value)
    assert "\n" not in message
    (folder / "prompts.json").write_text(format_example(message), encoding="utf-8")  # as the line says
    assert [(entry.image, bool(entry.prompt)) for entry in read_prompts(folder).entries] == [("000.png", True)]


def test_the_no_prompts_file_line_names_the_csv_header_too(tmp_path):
    from lowdim_sd.eval.prompts_file import EvalFolderError, read_prompts

    with pytest.raises(EvalFolderError, match=r"prompts\.csv as a header line image,prompt"):
        read_prompts(tmp_path)


def test_with_plugins_switched_off_any_unknown_metric_names_the_variable(monkeypatch):
    from lowdim_sd.eval.report import unknown_metric

    monkeypatch.setenv("LOWDIM_NO_PLUGINS", "1")
    assert unknown_metric("clip-t", []) == ("unknown metric 'clip-t': LOWDIM_NO_PLUGINS is set, so no plugin is "
                                            "loaded; unset it, or set it to 0; registered: none")
    monkeypatch.setenv("LOWDIM_NO_PLUGINS", "0")
    assert unknown_metric("nope", ["dino"]) == "unknown metric 'nope'; registered: dino"
