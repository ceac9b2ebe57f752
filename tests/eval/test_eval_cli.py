"""``lowdim eval`` end to end on tiny local models: the table, eval.json / eval.md, skips and errors."""

from __future__ import annotations

import json

import pytest

from lowdim.errors import LowdimError
from lowdim.metrics import MetricUnavailable
from lowdim.registry import Registry, use_registry
from lowdim_cli.eval_command import metric_options
from lowdim_cli.main import main
from lowdim_sd.eval.job import EvalJob, parse_metric_names, run_eval

pytestmark = pytest.mark.filterwarnings("ignore::lowdim_sd.eval.folder.EvalWarning")


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def folder(tmp_path, noise):
    (tmp_path / "ref.png").write_bytes(b"")
    noise(9).save(tmp_path / "ref.png")
    for i in range(3):
        noise(i).save(tmp_path / f"{i}.png")
    (tmp_path / "prompts.json").write_text(json.dumps({"token": "sks", "references": ["ref.png"], "images": [
        {"image": f"{i}.png", "prompt": p} for i, p in enumerate(["a sks face", "a sks face at night", "a sks dog"])]}))
    return tmp_path


def test_eval_writes_the_table_json_and_markdown(capsys, folder, tiny_clip, tiny_dino, tmp_path):
    out = tmp_path / "results"
    code, stdout, stderr = run(capsys, "eval", folder, "--metrics", "dino,clip-i,clip-t", "--dino-model", tiny_dino,
                               "--clip-model", tiny_clip, "--device", "cpu", "--out", out, "--no-progress")
    assert code == 0, stderr
    assert "DINO" in stdout and "CLIP-I" in stdout and "CLIP-T" in stdout
    report = json.loads((out / "eval.json").read_text())
    assert list(report["metrics"]) == ["dino", "clip-i", "clip-t"]
    assert report["metrics"]["dino"]["scored"] == 3 and report["metrics"]["dino"]["misses"] == 0
    assert [im["image"] for im in report["images"]] == ["0.png", "1.png", "2.png"]
    assert report["images"][1]["prompt"] == "a sks face at night"
    scores = [im["scores"]["clip-t"] for im in report["images"]]
    assert report["metrics"]["clip-t"]["mean"] == pytest.approx(sum(scores) / 3)
    markdown = (out / "eval.md").read_text()
    assert "|  | DINO ↑ | CLIP-I ↑ | CLIP-T ↑ |" in markdown and "## Per image" in markdown


@pytest.mark.parametrize("flag, message", [("--device", "unknown device 'gpu'"),
                                           ("--out", "a file, where a folder is needed")])
def test_a_bad_device_or_out_is_one_line_before_any_image_is_scored(capsys, folder, monkeypatch, flag, message):
    import lowdim_sd.eval.job

    monkeypatch.setattr(lowdim_sd.eval.job, "run_eval", lambda *a, **k: pytest.fail("the images were scored"))
    value = "gpu" if flag == "--device" else folder / "ref.png"
    code, stdout, stderr = run(capsys, "eval", folder, "--metrics", "clip-t", flag, value, "--no-progress")
    text = stdout + stderr
    assert code == 1 and "Traceback" not in text
    assert [line for line in text.splitlines() if line.strip()] == [line for line in text.splitlines()
                                                                    if "Error:" in line and message in line]


def test_an_unavailable_metric_is_skipped_and_the_others_run(capsys, folder, tiny_clip, tmp_path):
    code, stdout, _ = run(capsys, "eval", folder, "--metrics", "dino,clip-t", "--dino-model", tmp_path / "none" / "x",
                          "--clip-model", tiny_clip, "--device", "cpu", "--out", tmp_path / "r", "--no-progress")
    assert code == 0
    assert "skipped dino:" in stdout and "--dino-model" in stdout
    report = json.loads((tmp_path / "r" / "eval.json").read_text())
    assert list(report["metrics"]) == ["clip-t"] and "dino" in report["skipped_metrics"]


def test_two_metrics_skipped_for_one_reason_are_said_once(capsys, folder, tiny_dino, tmp_path):
    out, missing = tmp_path / "r", tmp_path / "none" / "x"
    code, stdout, _ = run(capsys, "eval", folder, "--metrics", "dino,clip-i,clip-t", "--clip-model", missing,
                          "--dino-model", tiny_dino, "--device", "cpu", "--out", out, "--no-progress")
    assert code == 0
    said = [line for line in stdout.splitlines() if line.startswith("skipped")]
    assert len(said) == 1 and "clip-i, clip-t" in said[0], stdout  # one model, one failure, one line
    written = [line for line in (out / "eval.md").read_text().splitlines() if " skipped: " in line]
    assert len(written) == 1 and "clip-i, clip-t" in written[0]
    assert set(json.loads((out / "eval.json").read_text())["skipped_metrics"]) == {"clip-i", "clip-t"}
    code, stdout, stderr = run(capsys, "eval", folder, "--metrics", "clip-i,clip-t", "--clip-model", missing,
                               "--device", "cpu", "--out", tmp_path / "r2", "--no-progress")
    assert code == 1 and (stdout + stderr).count(str(missing)) == 1, stdout + stderr  # none could run: said once


def test_input_errors_are_one_red_line(capsys, folder, tmp_path, tiny_clip):
    cases = [
        ([tmp_path / "empty-dir-that-is-missing"], ("eval folder", "not found")),
        ([folder, "--metrics", "dino,nope"], ("unknown metric 'nope'",)),
        ([folder, "--metrics", "clip-t", "--set", "clip-t.batch_size", "--no-progress"], ("METRIC.KEY=VALUE",)),
        ([folder, "--metrics", "clip-t", "--clip-model", tiny_clip, "--set", "clip-t.colour=red", "--no-progress"],
         ("rejected its options",)),
        ([folder, "--metrics", "dino", "--dino-model", tmp_path / "no" / "model", "--no-progress"],
         ("no metric could run: dino:",)),
    ]
    for args, words in cases:
        code, _, err = run(capsys, "eval", *args)
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1 and all(word in lines[0] for word in words), (args, err)


def test_help_teaches_the_folder_format_and_defaults(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # no wrapping inside the strings looked for
    code, stdout, _ = run(capsys, "eval", "--help")
    assert code == 0
    for text in ("prompts.json", "face-rec,dino,clip-i,clip-t", "--no-crop", "--references", "facebook/dino-vits16"):
        assert text in stdout


def test_metric_names_and_options_parse():
    assert parse_metric_names(" face-rec, dino ,") == ("face-rec", "dino")
    with pytest.raises(LowdimError, match="empty"):
        parse_metric_names(" , ")
    with pytest.raises(LowdimError, match="twice"):
        parse_metric_names("dino,dino")
    names = ("clip-t", "dino")
    assert metric_options(["dino.batch_size=4"], "d", "c", "f", names) == {
        "dino": {"model": "d", "batch_size": 4}, "clip-t": {"model": "c"}}


class _Fixed:
    """A plugin-style metric: the eval runs any registered Metric, chunk by chunk."""

    name, column = "fixed", "Fixed"

    def __init__(self, device: str = "cpu") -> None:
        self.device, self.calls = device, []

    def score(self, samples):
        self.calls.append(len(samples))
        return [None if "dog" in s.prompt else 0.5 for s in samples]


class _Plugin:
    made: list[_Fixed] = []

    @staticmethod
    def register_metrics(register):
        def fixed(device: str = "cpu"):
            _Plugin.made.append(_Fixed(device))
            return _Plugin.made[-1]

        def unavailable():
            raise MetricUnavailable("no weights here")

        register("fixed", fixed)
        register("gone", unavailable)


def test_registered_plugin_metrics_run_with_misses_notes_and_progress(folder):
    from lowdim.hookspecs import hookimpl

    plugin = type("plugin", (), {"register_metrics": staticmethod(hookimpl(_Plugin.register_metrics))})
    steps = []
    with use_registry(Registry.from_plugins([plugin])):
        report = run_eval(EvalJob(folder=folder, metrics=("fixed", "gone"), device="meta", chunk=2),
                          progress=lambda total: steps.append(total) or steps.append)
    (result,) = report.results
    assert result.scores == [0.5, 0.5, None] and result.summary.misses == 1
    assert report.skipped_metrics == {"gone": "no weights here"}
    assert _Plugin.made[-1].device == "meta" and _Plugin.made[-1].calls == [2, 1]
    assert steps == [3, 2, 1]
    assert "| misses | 1 |" in report.to_markdown()


class _NightOnly(_Fixed):
    """A metric with no question for some images: those are not scored and not misses."""

    name, column = "night", "Night"

    def applies(self, sample):
        return "night" in sample.prompt


def test_a_metric_that_does_not_apply_to_an_image_leaves_it_unscored_and_not_a_miss(folder):
    from lowdim_sd.eval.folder import load_eval_set
    from lowdim_sd.eval.report import run_metrics

    data = load_eval_set(folder)
    prompts = [sample.prompt for sample in data.samples]
    metric = _NightOnly()
    report = run_metrics(data.samples, {"night": metric}, chunk=2)
    (result,) = report.results
    wanted = ["night" in prompt for prompt in prompts]
    assert 0 < sum(wanted) < len(prompts)  # the fixture holds both kinds
    assert metric.calls == [n for n in (sum(wanted[:2]), sum(wanted[2:])) if n]  # never handed the others
    assert result.summary.not_asked == wanted.count(False) and result.summary.misses == 0
    assert [s is None for s in result.scores] == [not w for w in wanted]
    markdown = report.to_markdown()
    assert f"| not asked | {wanted.count(False)} |" in markdown and "| n/a |" in markdown
    assert [("not_asked" in image) for image in report.to_dict()["images"]] == [not w for w in wanted]


def test_no_image_scored_is_a_failure_that_names_the_tinyfaces_metrics_for_small_images(capsys, folder, tmp_path):
    out = tmp_path / "r"
    code, stdout, stderr = run(capsys, "eval", folder, "--metrics", "face-rec", "--device", "cpu", "--out", out,
                               "--no-progress")
    said = " ".join(stderr.split())
    assert code == 1 and "Traceback" not in stderr
    assert "Error: no metric scored any of the 3 images (ran: face-rec); the notes above say why" in said
    assert ("these are 48 px images, as TinyFaces draws them: score them with --metrics "
            "tinyfaces-identity,tinyfaces-style,tinyfaces-image") in said
    assert json.loads((out / "eval.json").read_text())["metrics"]["face-rec"]["scored"] == 0  # the misses are kept
    code, _, stderr = run(capsys, "eval", folder, "--metrics", "tinyfaces-identity,tinyfaces-image", "--device",
                          "cpu", "--no-progress")
    assert code == 0, stderr


def test_options_a_metric_does_not_take_are_one_line_but_a_type_error_inside_it_is_raised():
    from lowdim.hookspecs import hookimpl
    from lowdim_sd.eval.report import load_metrics

    class Buggy:
        def __init__(self, size: int = 1) -> None:
            raise TypeError("a bug in the metric")

    plugin = type("plugin", (), {"register_metrics": staticmethod(hookimpl(lambda register: register("buggy", Buggy)))})
    with use_registry(Registry.from_plugins([plugin])):
        with pytest.raises(LowdimError, match=r"metric 'buggy' rejected its options \{'width': 3\}"):
            load_metrics(("buggy",), {"buggy": {"width": 3}})
        with pytest.raises(TypeError, match="a bug in the metric"):
            load_metrics(("buggy",), {"buggy": {"size": 3}})


def test_a_dangling_link_as_out_is_one_line_before_any_image_is_scored(capsys, folder, monkeypatch, tmp_path):
    import lowdim_sd.eval.job

    monkeypatch.setattr(lowdim_sd.eval.job, "run_eval", lambda *a, **k: pytest.fail("the images were scored"))
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    code, stdout, stderr = run(capsys, "eval", folder, "--metrics", "clip-t", "--out", tmp_path / "link",
                               "--no-progress")
    said = " ".join((stdout + stderr).split())
    assert code == 1 and "Traceback" not in said
    assert f"--out {tmp_path / 'link'}: a link to {tmp_path / 'gone'}, which does not exist" in said


def test_an_out_that_cannot_be_written_after_scoring_is_one_line_and_the_table_is_still_shown(
        capsys, folder, monkeypatch, tmp_path):
    import errno
    import os

    def disk_full(*args, **kwargs):  # the report's publication, as a full disk refuses it
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with only_metric("night", _NightOnly):
        code, stdout, stderr = run(capsys, "eval", folder, "--metrics", "night", "--out", tmp_path / "r",
                                   "--no-progress")
    said = " ".join((stdout + stderr).split())
    assert code == 1 and "Traceback" not in said and "Night" in stdout  # the table came first
    assert "could not write (No space left on device)" in said and str(tmp_path / "r") in said, said


def test_a_device_given_through_set_is_checked_like_device(capsys, folder, monkeypatch):
    import lowdim_sd.eval.job

    monkeypatch.setattr(lowdim_sd.eval.job, "run_eval", lambda *a, **k: pytest.fail("the images were scored"))
    code, stdout, stderr = run(capsys, "eval", folder, "--metrics", "clip-t", "--set", "clip-t.device=gpu",
                               "--no-progress")
    said = " ".join((stdout + stderr).split())
    assert code == 1 and "Traceback" not in said and "--set clip-t.device=gpu: unknown device 'gpu'" in said


def test_no_image_asked_by_the_only_metric_says_so(capsys, folder):
    with only_metric("cats", _CatsOnly):
        code, stdout, stderr = run(capsys, "eval", folder, "--metrics", "cats", "--no-progress")
    said = " ".join((stdout + stderr).split())
    assert code == 1 and "Traceback" not in said
    assert "cats asked nothing of any of the 3 images" in said


class _CatsOnly(_Fixed):
    name, column = "cats", "Cats"

    def applies(self, sample):
        return "cat" in sample.prompt


def test_a_model_flag_for_a_metric_not_asked_for_is_a_warning(capsys, folder):
    with only_metric("night", _NightOnly):
        code, stdout, stderr = run(capsys, "eval", folder, "--metrics", "night", "--dino-model", "/nowhere",
                                   "--no-progress")
    said = " ".join((stdout + stderr).split())
    assert code == 0, said
    assert "--dino-model is only read by dino, which --metrics does not ask for: it is ignored" in said
    assert "--clip-model" not in said


def only_metric(name, factory):
    """A registry holding one metric, registered as a plugin would."""
    from lowdim.hookspecs import hookimpl

    class Plugin:
        @staticmethod
        @hookimpl
        def register_metrics(register):
            register(name, factory)

    return use_registry(Registry.from_plugins([Plugin]))



def test_a_resource_the_garbage_collector_closes_meanwhile_is_no_note_of_the_report():
    """In a long-lived process (the ui's server) an unclosed event loop of another part can be collected while
    the metrics run: the interpreter's ResourceWarning is no note about the pictures (it made the ui's three
    Evaluate results differ, now and then)."""
    import warnings

    from lowdim_sd.eval.report import notes_of

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn("unclosed event loop <_UnixSelectorEventLoop running=False>", ResourceWarning, stacklevel=1)
        warnings.warn("2 images skipped", UserWarning, stacklevel=1)
    assert notes_of(caught) == ["2 images skipped"]
