"""``lowdim personalize``: phase 2 with and without a hypernetwork, its ablation flags, and stage times."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

import lowdim
from lowdim_sd.personalize import PersonalizeJob, personalize


@pytest.fixture
def hypernet(make_hypernet):
    """A (random) hypernetwork for the tiny model's default layer set, with visible predictions."""
    return make_hypernet(2)


def job(tiny_sd, face, out, **kwargs) -> PersonalizeJob:
    steps = {} if kwargs.get("only_hyper") else {"steps": 3}  # --only-hyper trains nothing: --steps is refused
    return PersonalizeJob(model=str(tiny_sd), image=face, out=out, **{**steps, "preview": False, "crop": False,
                                                                       **kwargs})


def test_without_hypernetwork_it_fast_finetunes_a_relaxed_stack(tiny_sd, face, tmp_path):
    result = personalize(job(tiny_sd, face, tmp_path / "a", rank=3, export=["kohya"]), progress=False)
    adapter = lowdim.read_adapter(result.adapter)
    assert adapter.space.name == "stack" and len(result.losses) == 3
    assert {down.shape[0] for down, _ in adapter.lora_factors().values()} == {1 + 3}
    # no network, so the stage that starts the adapter is named for what it does: a zero start, no prediction
    assert {"load model", "read image", "initial adapter", "fast finetune", "export"} <= set(result.stages)
    assert "hypernetwork" not in result.stages
    assert result.exports[0].is_file()


def test_only_hyper_writes_exactly_the_prediction(tiny_sd, face, tmp_path, hypernet):
    result = personalize(job(tiny_sd, face, tmp_path / "b", hypernet=hypernet, only_hyper=True), progress=False)
    adapter = lowdim.read_adapter(result.adapter)
    assert adapter.space.name == "lidb" and result.losses == []
    assert sum(float(t.abs().sum()) for p in adapter.params.values() for t in p.values()) > 0


def test_hypernetwork_prediction_is_the_frozen_start_of_fast_finetuning(tiny_sd, face, tmp_path, hypernet):
    only = personalize(job(tiny_sd, face, tmp_path / "c", hypernet=hypernet, only_hyper=True), progress=False)
    full = personalize(job(tiny_sd, face, tmp_path / "d", hypernet=hypernet, iterations=2), progress=False)
    predicted = lowdim.read_adapter(only.adapter).params
    stacked = lowdim.read_adapter(full.adapter).params
    for layer, params in predicted.items():
        for name, value in params.items():
            assert torch.equal(stacked[layer][f"c0_{name}"], value)  # frozen while the LoRA trained
    assert "hypernetwork" in full.stages and "initial adapter" not in full.stages
    none = personalize(job(tiny_sd, face, tmp_path / "e", hypernet=hypernet, no_hyper=True), progress=False)
    assert "initial adapter" in none.stages and "hypernetwork" not in none.stages
    assert all(float(v.abs().sum()) == 0 for p in lowdim.read_adapter(none.adapter).params.values()
               for k, v in p.items() if k.startswith("c0_A"))


def test_the_prediction_is_the_networks_after_the_iterations_asked_for(tiny_sd, face, tmp_path, hypernet):
    from lowdim.hyper import load_hypernet
    from lowdim_sd.face_inputs import load_face_image

    result = personalize(job(tiny_sd, face, tmp_path / "t", hypernet=hypernet, only_hyper=True, iterations=3,
                             resolution=16, save_dtype="fp32"), progress=False)
    written = lowdim.read_adapter(result.adapter).params
    image = load_face_image(face, 16, crop=False)[None]  # the reference as the run read it
    with torch.no_grad():
        iterates = load_hypernet(hypernet).eval()(image, iterations=3, return_all=True)

    def farthest(theta: dict) -> float:
        return max(float((written[layer][name] - value[0]).abs().max()) for layer, params in theta.items()
                   for name, value in params.items())

    assert farthest(iterates[2]) < 1e-5
    assert farthest(iterates[0]) > 1e-2 and farthest(iterates[1]) > 1e-2  # not one pass, nor the file's own 2


def test_a_hypernetwork_for_another_target_lists_the_differences(tiny_sd, face, tmp_path, hypernet):
    with pytest.raises(lowdim.LowdimError, match="does not fit the requested target.*layer"):
        personalize(job(tiny_sd, face, tmp_path / "f", hypernet=hypernet, layers="*attn1.to_q"), progress=False)


def test_a_narrower_layer_set_keeps_exactly_its_part_of_the_prediction(tiny_sd, face, tmp_path, hypernet):
    whole = personalize(job(tiny_sd, face, tmp_path / "w", hypernet=hypernet, only_hyper=True), progress=False)
    unet = personalize(job(tiny_sd, face, tmp_path / "u", hypernet=hypernet, only_hyper=True, layers="unet"),
                       progress=False)
    whole_params, unet_params = (lowdim.read_adapter(r.adapter).params for r in (whole, unet))
    assert unet_params and set(unet_params) == {name for name in whole_params if name.startswith("unet.")}
    assert len(unet_params) < len(whole_params)  # the text encoder's part is left out, not zeroed
    for layer, params in unet_params.items():
        assert all(torch.equal(whole_params[layer][k], v) for k, v in params.items())


def test_globs_naming_the_networks_own_patterns_keep_their_part_of_the_prediction(tiny_sd, face, tmp_path, hypernet):
    # Comma-separated globs also select 1x1 convolutions; the network's set does not, which must not
    # matter when the globs meet only attention projections.
    whole = personalize(job(tiny_sd, face, tmp_path / "w", hypernet=hypernet, only_hyper=True), progress=False)
    cut = personalize(job(tiny_sd, face, tmp_path / "q", hypernet=hypernet, only_hyper=True,
                          layers="unet.*.attn1.to_q,unet.*.attn2.to_out.0"), progress=False)
    whole_params, cut_params = (lowdim.read_adapter(r.adapter).params for r in (whole, cut))
    assert cut_params and all(name.endswith(("attn1.to_q", "attn2.to_out.0")) for name in cut_params)
    assert set(cut_params) == {n for n in whole_params if n.endswith(("attn1.to_q", "attn2.to_out.0"))}
    for layer, params in cut_params.items():
        assert all(torch.equal(whole_params[layer][k], v) for k, v in params.items())


def test_a_glob_meeting_a_layer_the_network_does_not_predict_is_named(tiny_sd, face, tmp_path, hypernet,
                                                                      monkeypatch):
    # As if the model had a 1x1 convolution that the globs select and the network's own set leaves out.
    from types import SimpleNamespace

    import lowdim.sizing as sizing

    real = sizing.layer_specs
    extra = "unet.mid_block.attentions.0.proj_in"

    def with_a_convolution(modules, layers):
        specs = list(real(modules, layers))
        return specs if layers.name == "unet+text" else [*specs, SimpleNamespace(name=extra)]

    monkeypatch.setattr(sizing, "layer_specs", with_a_convolution)
    with pytest.raises(lowdim.LowdimError, match=f"predicts no layer {extra} .*made for unet\\+text"):
        personalize(job(tiny_sd, face, tmp_path / "v", hypernet=hypernet, only_hyper=True,
                        layers="unet.*.attn1.to_q"), progress=False)


def test_the_backends_own_hypernetwork_is_used_only_where_it_fits(tiny_sd, face, tmp_path, hypernet, monkeypatch):
    import lowdim_sd.personalize_hypernet as personalize_hypernet

    monkeypatch.setattr(personalize_hypernet, "default_hypernet", lambda model_name: hypernet)
    shipped = personalize(job(tiny_sd, face, tmp_path / "g", only_hyper=True), progress=False)
    named = personalize(job(tiny_sd, face, tmp_path / "h", hypernet=hypernet, only_hyper=True), progress=False)
    assert lowdim.read_adapter(shipped.adapter).params.keys() == lowdim.read_adapter(named.adapter).params.keys()
    for layer, params in lowdim.read_adapter(named.adapter).params.items():
        assert all(torch.equal(lowdim.read_adapter(shipped.adapter).params[layer][k], v) for k, v in params.items())
    with pytest.warns(UserWarning, match="predicts lidb on unet\\+text layers.*stays at zero and only the rank-4 LoRA"):
        other = personalize(job(tiny_sd, face, tmp_path / "i", layers="*attn1.to_q"), progress=False)
    assert all(float(v.abs().sum()) == 0 for p in lowdim.read_adapter(other.adapter).params.values()
               for k, v in p.items() if k.startswith("c0_A"))


@pytest.mark.parametrize("options", [{"rank": 2}, {"a": 50}])
def test_the_backends_own_hypernetwork_is_not_used_for_other_settings_of_its_space(tiny_sd, face, tmp_path, hypernet,
                                                                                    monkeypatch, options):
    # --set rank=2 on a model that ships a rank-1 network: a run from zero with a note, not an error about a file
    # the user never named, nor a prediction made for other bases
    import lowdim_sd.personalize_hypernet as personalize_hypernet

    monkeypatch.setattr(personalize_hypernet, "default_hypernet", lambda model_name: hypernet)
    (key, value), = options.items()
    shipped = lowdim.get_space("lidb").config.to_dict()[key]
    said = f"predicts lidb on unet+text layers, not PersonalizeJob(space_options=...) {key}={value} (it: {shipped}): "
    with pytest.warns(UserWarning, match=re.escape(said)):  # the option that differs, not "the space or layers"
        result = personalize(job(tiny_sd, face, tmp_path / "j", space_options=options, steps=1), progress=False)
    written = lowdim.read_adapter(result.adapter)
    assert "hypernetwork" not in result.stages
    assert written.space.config.to_dict()["components"][0]["config"].items() >= options.items()
    assert all(float(v.abs().sum()) == 0 for p in written.params.values() for k, v in p.items()
               if k.startswith("c0_A"))


def test_only_hyper_with_settings_the_shipped_network_was_not_made_for_says_which(tiny_sd, face, tmp_path, hypernet,
                                                                                   monkeypatch):
    # A run that keeps only the prediction has none for other settings: the refusal names the one that differs,
    # not "needs a hypernetwork", which the model does ship
    import lowdim_sd.personalize_hypernet as personalize_hypernet

    monkeypatch.setattr(personalize_hypernet, "default_hypernet", lambda model_name: hypernet)
    unfit = (r" keeps the hypernetwork's prediction alone, and .*'s hypernetwork predicts lidb on unet\+text layers, "
             r"not PersonalizeJob\(space_options=\.\.\.\) rank=2 \(it: 1\): leave those")
    for keeping, asked in ((r"PersonalizeJob\(only_hyper=True\)", {"only_hyper": True}),
                           (r"PersonalizeJob\(steps=\.\.\.\) 0", {"steps": 0})):  # --steps 0 keeps it alone too
        with pytest.raises(lowdim.LowdimError, match=keeping + unfit):
            personalize(job(tiny_sd, face, tmp_path / "o", space_options={"rank": 2}, **asked), progress=False)
    assert not (tmp_path / "o").exists()


def test_an_older_preview_left_in_the_folder_is_pointed_out(tiny_sd, face, tmp_path):
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "preview.png").write_bytes(b"old")
    (tmp_path / "k" / "adapter.kohya.safetensors").write_bytes(b"old")
    with pytest.warns(UserWarning) as caught:
        personalize(job(tiny_sd, face, tmp_path / "k"), progress=False)
    stale = sorted(str(w.message) for w in caught if "earlier run" in str(w.message))
    assert len(stale) == 2 and "adapter.kohya.safetensors" in stale[0] and "preview.png" in stale[1]


def test_the_adapter_file_records_how_it_was_made(tiny_sd, face, tmp_path, hypernet):
    import json

    result = personalize(job(tiny_sd, face, tmp_path / "m", hypernet=hypernet, seed=3, iterations=1), progress=False)
    made = json.loads(lowdim.read_adapter(result.adapter).metadata["extra"])
    assert made["steps"] == 3 and made["seed"] == 3 and made["rank"] == 4 and made["image"] == face.name
    assert made["hypernet"]["file"] == str(hypernet.resolve()) and made["hypernet"]["iterations"] == 1
    assert len(made["hypernet"]["digest"]) == 16 and made["hypernet"]["bases_seed"] == 3  # none recorded: --seed
    scratch = personalize(job(tiny_sd, face, tmp_path / "n"), progress=False)
    assert json.loads(lowdim.read_adapter(scratch.adapter).metadata["extra"])["hypernet"] is None


def test_a_hypernetwork_matches_its_model_however_the_path_is_spelled(tiny_sd, face, tmp_path, hypernet,
                                                                      monkeypatch):
    monkeypatch.chdir(tiny_sd.parent)
    relative = f"./{tiny_sd.name}"  # the fixture recorded the absolute path
    result = personalize(PersonalizeJob(model=relative, image=face, out=tmp_path / "o", preview=False,
                                        crop=False, hypernet=hypernet, only_hyper=True), progress=False)
    assert result.adapter.is_file()


def test_a_listener_sees_every_stage_and_each_bars_steps_without_a_terminal_bar(tiny_sd, face, tmp_path, capsys):
    from lowdim_sd import runs

    heard: list[tuple[str, int, int]] = []
    with runs.listen(lambda label, done, total: heard.append((label, done, total))):
        result = personalize(job(tiny_sd, face, tmp_path / "l", preview=True, preview_steps=1), progress=False)
    stages = [label for label, done, total in heard if (done, total) == (0, 1) and label in result.stages]
    assert stages == list(result.stages)  # every stage, in the order it ran
    assert [(done, total) for label, done, total in heard if label == "training"] == [(1, 3), (2, 3), (3, 3)]
    assert ("generating", len(result.gallery) - 1, len(result.gallery) - 1) in heard
    assert capsys.readouterr().err == ""  # progress=False: nothing drawn on the terminal


def test_the_gallery_holds_the_reference_then_one_picture_per_preview_prompt(tiny_sd, face, tmp_path):
    result = personalize(job(tiny_sd, face, tmp_path / "p", preview=True, preview_steps=1), progress=False)
    captions = [caption for caption, _ in result.gallery]
    assert captions[0] == "reference" and len(captions) > 2
    assert all(image.size == result.gallery[0][1].size for _, image in result.gallery)
    quiet = personalize(job(tiny_sd, face, tmp_path / "q"), progress=False)
    assert quiet.gallery == []


def test_a_gpu_out_of_memory_for_the_preview_keeps_the_run_and_its_adapter(tiny_sd, face, tmp_path, monkeypatch):
    # generate already fell back to one picture a call; the adapter is written by then, so the run stands.
    def no_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 512.00 MiB")

    monkeypatch.setattr("lowdim_sd.generate.generate", no_memory)
    with pytest.warns(UserWarning, match="no preview: out of GPU memory") as caught:
        result = personalize(job(tiny_sd, face, tmp_path / "r", preview=True, preview_steps=1), progress=False)
    assert result.preview is None and result.gallery == [] and "preview" in result.stages
    assert not (tmp_path / "r" / "preview.png").exists()
    assert any(str(result.adapter) in str(warning.message) for warning in caught)
    assert lowdim.read_adapter(result.adapter).space.name == "stack"


def test_a_preview_picture_that_comes_out_nan_keeps_the_run_and_its_adapter(tiny_sd, face, tmp_path, monkeypatch):
    # generate refuses a NaN picture (rather than drawing it black); by the preview the adapter is written.
    from lowdim_sd.finite_latents import NaNPicture

    def nan_picture(*args, **kwargs):
        raise NaNPicture("the picture of 'a [V] face' (seed 0) came out as NaN (not a number), a black picture")

    monkeypatch.setattr("lowdim_sd.generate.generate", nan_picture)
    with pytest.warns(UserWarning, match="no preview: the picture of 'a \\[V\\] face' .* came out as NaN") as caught:
        result = personalize(job(tiny_sd, face, tmp_path / "r", preview=True, preview_steps=1), progress=False)
    assert result.preview is None and result.gallery == [] and result.adapter.is_file()
    assert any(str(result.adapter) in str(warning.message) for warning in caught)


def test_each_preview_draw_is_a_row_drawn_with_the_written_file_that_way(tiny_sd, face, tmp_path):
    """--preview-draw: one row each; a row other than the plain one is what `lowdim generate --adapter FILE:S
    --text-encoder-scale T --adapter-start F` draws."""
    from lowdim_sd.draw_parts import DrawParts
    from lowdim_sd.generate import GenerateConfig, attach_adapters, generate
    from lowdim_sd.loading import load_sd

    result = personalize(job(tiny_sd, face, tmp_path / "s", preview=True, preview_steps=2, learning_rate=0.3,
                             preview_draws=("1", "0.5", "0.000001", "te=0@start=0.5")), progress=False)
    cells = len(result.gallery) // 4
    rows = [result.gallery[k * cells:(k + 1) * cells] for k in range(4)]
    apart = "text encoder's part at 0, UNet part from 50% of the steps"
    assert [row[0][0] for row in rows] == ["reference", "reference; right: scale 0.5", "reference; right: scale 1e-06",
                                          f"reference; right: {apart}"]
    prompts = [caption for caption, _ in rows[0][1:]]
    assert [caption for caption, _ in rows[1][1:]] == [f"{prompt} (0.5)" for prompt in prompts]
    assert [caption for caption, _ in rows[3][1:]] == [f"{prompt} (te=0@start=0.5)" for prompt in prompts]

    def pixels(image) -> np.ndarray:
        return np.asarray(image, dtype=float)

    def drawn(scale: float | None, parts: DrawParts = DrawParts()) -> list[np.ndarray]:
        model = load_sd(str(tiny_sd))
        if scale is not None:
            attach_adapters(model, [(result.adapter, scale)])
        config = GenerateConfig(prompts=prompts, seeds=[0], steps=2, token="sks", parts=parts)
        return [pixels(item.image) for item in generate(model, config)]

    base, half = drawn(None), drawn(0.5)
    parts_apart = drawn(1.0, DrawParts(text_encoder_scale=0.0, adapter_start=0.5))
    for k in range(len(prompts)):
        assert np.abs(pixels(rows[1][k + 1][1]) - half[k]).max() <= 2  # the file at 0.5, to rounding
        assert np.abs(pixels(rows[2][k + 1][1]) - base[k]).max() <= 2  # at a scale near 0: the base model
        assert np.abs(pixels(rows[3][k + 1][1]) - parts_apart[k]).max() <= 2
    assert max(np.abs(pixels(rows[0][k + 1][1]) - base[k]).max() for k in range(len(prompts))) > 20
    assert max(np.abs(pixels(rows[3][k + 1][1]) - pixels(rows[0][k + 1][1])).max() for k in range(len(prompts))) > 2
    assert Image.open(result.preview).height > 4 * rows[0][1][1].height  # four rows in preview.png


def test_gradient_checkpointing_gives_the_same_adapter_and_is_off_again_afterwards(tiny_sd, face, tmp_path,
                                                                                   monkeypatch):
    import lowdim_sd.train as train_module

    seen = []
    real = train_module._set_eval_mode
    monkeypatch.setattr(train_module, "_set_eval_mode",
                        lambda model: (seen.append(model.pipe.unet.is_gradient_checkpointing), real(model),
                                       seen.append(model.pipe.unet.is_gradient_checkpointing)))
    plain = personalize(job(tiny_sd, face, tmp_path / "plain"), progress=False)
    saving = personalize(job(tiny_sd, face, tmp_path / "gc", gradient_checkpointing=True), progress=False)
    assert seen == [False, False, True, False]  # on while training, off again once done
    ours, theirs = lowdim.read_adapter(plain.adapter).params, lowdim.read_adapter(saving.adapter).params
    for layer, params in ours.items():
        for name, value in params.items():
            assert torch.allclose(value.float(), theirs[layer][name].float(), atol=1e-3), (layer, name)


@pytest.mark.parametrize("stopped", ["export", "preview"])
def test_ctrl_c_after_the_adapter_is_written_keeps_it_and_says_how_to_use_it_or_start_over(
        tiny_sd, face, tmp_path, monkeypatch, capsys, stopped):
    from lowdim_cli.main import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    target = {"export": "lowdim_sd.export.export_adapter",
              "preview": "lowdim_sd.personalize.preview_unless_out_of_memory"}
    monkeypatch.setattr(target[stopped], interrupted)
    out = tmp_path / "me"
    command = ["personalize", "-m", str(tiny_sd), "-i", str(face), "-o", str(out), "--steps", "1", "--no-crop",
               "--export", "kohya", "--device", "cpu"]
    assert main([*command, "--preview-steps", "1"]) == 130
    said = " ".join(capsys.readouterr().err.split())
    adapter = out / "adapter.safetensors"
    assert f"Interrupted during the {stopped}; the adapter is complete: {adapter}" in said
    assert f"lowdim generate -m {tiny_sd} -a {adapter}" in said and "--overwrite" in said
    assert "Nothing half-written" not in said
    assert lowdim.read_adapter(adapter).space.name == "stack"
    monkeypatch.undo()
    assert main([*command, "--overwrite", "--no-preview"]) == 0


def test_layers_that_match_nothing_are_an_error_with_no_warning_about_the_hypernetwork_before_it(
        tiny_sd, face, tmp_path, hypernet, monkeypatch):
    import warnings

    import lowdim_sd.personalize_hypernet as personalize_hypernet

    monkeypatch.setattr(personalize_hypernet, "default_hypernet", lambda model_name: hypernet)
    with warnings.catch_warnings(record=True) as caught, pytest.raises(lowdim.LowdimError, match="matches no"):
        warnings.simplefilter("always")
        personalize(job(tiny_sd, face, tmp_path / "n", layers="nothing.matches"), progress=False)
    assert [str(w.message) for w in caught if "hypernetwork predicts" in str(w.message)] == []
    with pytest.warns(UserWarning, match=r"only the rank-4 LoRA on top trains \(3 steps\)"):
        personalize(job(tiny_sd, face, tmp_path / "m", layers="*attn1.to_q"), progress=False)
