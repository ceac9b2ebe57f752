"""The ladder's rungs 6 and 12: Ours' rank-relaxed finetune at other learning rates, lengths and batches, on
VALIDATION identities (docs/results.md). The bench's "ours" row is the paper's recipe (40 steps) with the
model's batch and rate (TinyFaces: 8 copies of the image per step at 1e-2, chosen on validation by rung 12);
this runs the same row with another rate and step count into its own folder.

    lowdim tinyfaces-identities -o runs/ladder/val-ids --count 16 --split val   # or VAL_IDS=FOLDER
    python benchmarks/ours_finetune_sweep.py 1e-2 40 runs/ladder/sweep-ours-1e-2-40 [HYPERNET]
    python benchmarks/ours_finetune_sweep.py 6e-3 80 runs/ladder/sweep-ours-6e-3-80

LIMIT=N uses the first N identities (default 16; VAL_IDS=FOLDER with LIMIT=50 runs the test table's 50).
BATCH=N sets the copies of the image per step (rung 6 was BATCH=1, the earlier default); METHOD=no-hyper
runs the No Hyper row with the same recipe instead (rung 12b).

RELAX=0 in the environment (rung 9) finetunes the prediction itself, in its own space (LiDB), instead of
a rank-relaxed LoRA on top of it: LiDB DreamBooth's recipe, started from the prediction.

MODEL=NAME runs it on another registered model (e.g. tinyfaces-retrained, rung 14; pass its HYPERNET).
HYPERNET defaults to TinyFaces' shipped one. Two folders pair up by identity through
their per-identity results (results/ours/*.json).
"""

import dataclasses
import os
import sys

from lowdim_sd.bench import methods


def main(argv: list[str]) -> int:
    rate, steps, out = float(argv[0]), int(argv[1]), argv[2]
    hypernet = argv[3] if len(argv) > 3 else None
    identities = os.environ.get("VAL_IDS", "runs/ladder/val-ids")
    row = os.environ.get("METHOD", "ours")
    model = os.environ.get("MODEL", "tinyfaces")
    methods.METHODS[row] = dataclasses.replace(methods.METHODS[row], learning_rate=rate, steps=steps)
    if os.environ.get("BATCH"):
        from lowdim.registry import get_registry

        get_registry().backends[model].value.finetune_batch = int(os.environ["BATCH"])
    if os.environ.get("RELAX") == "0":
        keep_prediction_trainable()
    from lowdim_cli.main import main as lowdim

    if hypernet is None:
        from lowdim.registry import get_registry

        shipped = get_registry().backends[model].value.default_hypernet
        if shipped is None:
            sys.exit(f"MODEL={model} ships no hypernetwork: pass one as the fourth argument")
        hypernet = str(shipped)
    limit = os.environ.get("LIMIT", "16")
    return lowdim(["bench", "quality", "-m", model, "-i", identities, "--limit", limit, "--hypernet", hypernet,
                   "-o", out, "--methods", row, "--gallery-prompts", ""])


def keep_prediction_trainable() -> None:
    """personalize's finetune trains the predicted adapter itself (no frozen copy, no LoRA on top)."""
    from lowdim_sd import personalize
    from lowdim_sd.modes import ADAPTER, AdapterTrainable

    def trainable(model, run, predicted):
        import lowdim

        adapters = lowdim.Adapters(model.modules)
        adapters.add(ADAPTER, run.space, run.layers, seed=run.bases_seed)
        adapters.load_tensors(ADAPTER, {k: {p: v[0] for p, v in t.items()} for k, t in predicted.items()})
        return AdapterTrainable(model, ADAPTER, ["adapter"], {"base_model": model.base_model_id,
                                                              "token": run.job.token})

    personalize.initial_trainable = trainable


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
