"""``lowdim show`` on a stranger's file: a row quoting why a load refuses it ("problem", "needs") is one bounded line
that says how long the whole text was (``--json`` keeps it whole), a shard's identity names are cut, and a
hypernetwork's tensors are checked as its load checks them (a stray, a missing or an integer tensor named in the
load's words), from the header alone."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from safetensors_edit import rewrite

from lowdim.errors import LowdimError
from lowdim.hyper import load_hypernet
from lowdim_cli.main import main
from lowdim_sd.file_info import describe

pytestmark = pytest.mark.usefixtures("one_thread")

HUGE = 100_000
SHORT_ROW = 600  # a cut row: its head, escaped, and its length


def shown(path, capsys) -> dict:
    """`lowdim show` prints a short table and exits 0; --json's fields, whole."""
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert len(out) < 5_000 and "characters)" in out
    assert main(["show", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)["fields"]


def load_words(path) -> str:
    """What loading the hypernetwork says, without the path every load error starts with."""
    with pytest.raises(LowdimError) as refused:
        load_hypernet(path)
    return str(refused.value).removeprefix(f"{path}: ")


def test_a_huge_load_error_is_a_bounded_problem_row_saying_its_length(make_hypernet, capsys):
    path = rewrite(make_hypernet(1), format_version="v" * HUGE)  # "format version 'vvv...', which no lowdim writes"
    words = load_words(path)
    info = describe(path)
    problem = dict(info.rows)["problem"]
    assert len(problem) <= SHORT_ROW and problem.endswith(f"({len(words):,} characters)"), problem[:700]
    assert problem[1:].startswith("hypernetwork format version 'vvv") and info.use == ""  # quoted, escaped
    assert shown(path, capsys)["problem"] == words


def test_a_huge_space_name_the_adapter_needs_is_a_bounded_row(tiny_sd, tmp_path, capsys):
    import lowdim
    from lowdim_sd.loading import load_sd

    model = load_sd(str(tiny_sd))
    lowdim.inject(model.modules, lowdim.get_space("lidb"), ["*attn1.to_q"], seed=3)
    path = lowdim.save_adapter(tmp_path / "me.safetensors", model.modules, base_model="tiny-base")
    rewrite(path, space="s" * HUGE)  # a plugin's space no installed plugin provides
    needs = dict(describe(path).rows)["needs"]
    whole = shown(path, capsys)["needs"]
    assert "s" * HUGE in whole
    assert len(needs) <= SHORT_ROW and needs.endswith(f"({len(whole):,} characters)"), needs[:700]


def test_a_shard_with_a_huge_identity_name_cuts_it_and_json_keeps_it(tmp_path, capsys):
    name = "n" * 10_000
    shard = tmp_path / "shard-00000.safetensors"
    save_file({"layer/A": torch.zeros(2, 2)}, str(shard),
              {"format": "lowdim.weights.shard", "identities": json.dumps([name, "id-00001"])})
    row = dict(describe(shard).rows)["identities"]
    assert row.startswith("2: 'nnn") and "(10,000 characters)" in row and row.endswith(", id-00001")
    assert len(row) <= 300, row[:400]
    assert shown(shard, capsys)["identities"] == [name, "id-00001"]


def _tensors(path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), "pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118


def _metadata(path) -> dict[str, str]:
    with safe_open(str(path), "pt") as handle:
        return handle.metadata()


def _stray(tensors: dict) -> dict:
    return {**tensors, "stray.weight": torch.zeros(3)}


def _missing(tensors: dict) -> dict:
    return {key: value for key, value in tensors.items() if key != sorted(tensors)[0]}


def _integer(tensors: dict) -> dict:
    key = sorted(tensors)[0]
    return {**tensors, key: torch.zeros(tensors[key].shape, dtype=torch.int64)}


@pytest.mark.parametrize(("edit", "said"), [
    (_stray, "unexpected: stray.weight)"),
    (_missing, "(missing: "),
    (_integer, "holds int64, not floats"),
], ids=["stray", "missing", "integer"])
def test_a_hypernetwork_tensor_the_load_refuses_is_the_problem_row_in_its_words(make_hypernet, monkeypatch, edit,
                                                                                  said):
    path = make_hypernet(1)
    save_file(edit(_tensors(path)), str(path), _metadata(path))
    words = load_words(path)
    assert said in words  # the load's own refusal, which show repeats

    def no_read(*args, **kwargs):
        raise AssertionError("show read the tensors or loaded a model")

    # Read from the header alone: no tensor value is read, no model is loaded.
    monkeypatch.setattr("lowdim.hyper.storage.read_checked", no_read)
    monkeypatch.setattr("lowdim_sd.loading.load_sd", no_read)
    info = describe(path)
    assert dict(info.rows)["problem"] == words and info.use == ""


def test_a_hypernetwork_whose_tensors_fit_has_no_problem_row(make_hypernet):
    info = describe(make_hypernet(1))
    assert "problem" not in dict(info.rows) and info.use.startswith("lowdim personalize")


def test_a_checkpoints_optimizer_state_with_a_huge_step_and_entry_name_is_cut(tmp_path, capsys):
    from lowdim_sd.checkpoint_reading import optimizer_metadata

    entry = "e" * 10_000
    tensors = {f"0.{entry}": torch.zeros(2), "1.exp_avg": torch.zeros(2)}
    metadata = {**optimizer_metadata(3, [torch.zeros(2), torch.zeros(2)], tensors), "step": "7" * HUGE}
    path = tmp_path / "optimizer.safetensors"
    save_file(tensors, str(path), metadata)
    info = describe(path)
    rows = dict(info.rows)
    assert rows["step"].endswith(f"({HUGE:,} characters)") and len(rows["step"]) <= 300
    assert "(10,000 characters)" in rows["parameters"] and len(rows["parameters"]) <= 400
    assert len(info.kind) <= 400 and len(info.use) <= 400
    assert shown(path, capsys)["step"] == "7" * HUGE


def test_a_hypernetwork_whose_encoder_config_no_network_can_be_built_from_is_a_problem_row(make_hypernet, capsys):
    path = make_hypernet(1)
    meta = _metadata(path)
    encoder = {**json.loads(meta["encoder_config"]), "hidden_size": -16}  # torch's own refusal, no LowdimError
    hyper = {**json.loads(meta["hyper_config"]), "encoder_config": encoder}
    rewrite(path, encoder_config=json.dumps(encoder), hyper_config=json.dumps(hyper))
    info = describe(path)
    assert dict(info.rows)["problem"].startswith("its network cannot be built from the configs it records (")
    assert info.use == ""
    assert main(["show", str(path)]) == 0 and "Traceback" not in capsys.readouterr().err
