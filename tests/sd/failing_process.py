"""One process of a launched run that fails where it is told, then the `lowdim` script as `python -m lowdim_cli.main`
runs it (its signal handling included). For the tests of a run whose other process fails (tests/sd).

    FAIL_RANK=1 FAIL_AT=crop|picture|weights|step [FAIL_STEP=N] python failing_process.py precompute ...

crop: precompute's crop setting refused before the process group forms (a machine without the faces extra);
picture: precompute's pictures unreadable on this process; weights: train-hypernet's weight folder refused before
the process group forms (a machine without it); step: train-hypernet's losses raise at step N."""

from __future__ import annotations

import os

from lowdim.errors import LowdimError

CROP_LINE = "--crop needs dlib, which this machine lacks: pip install 'lowdim[faces]'"
PICTURE_LINE = "not a picture (unreadable on this machine)"
STEP_LINE = "the step's pictures are unreadable on this machine"
WEIGHTS_LINE = "no identities in weights (not on this machine)"


def _fail_here() -> None:
    where = os.environ["FAIL_AT"]
    if where == "crop":
        import lowdim_sd.precompute as precompute

        def resolve_crop(*args, **kwargs):
            raise LowdimError(CROP_LINE)

        precompute.resolve_crop = resolve_crop
    elif where == "picture":
        import lowdim_sd.precompute as precompute

        def load_face_image(path, *args, **kwargs):
            raise LowdimError(f"{path.name}: {PICTURE_LINE}")

        precompute.load_face_image = load_face_image
    elif where == "weights":
        import lowdim_sd.hypertrain as hypertrain

        def check_has_identities(dataset):
            raise LowdimError(WEIGHTS_LINE)

        hypertrain.check_has_identities = check_has_identities
    elif where == "step":
        import lowdim_sd.hypertrain as hypertrain

        losses, failing_step = hypertrain.pair_losses, int(os.environ["FAIL_STEP"])

        def pair_losses(net, diffusion, batch, step, job, **kwargs):
            if step + 1 >= failing_step:
                raise LowdimError(f"step {step + 1}: {STEP_LINE}")
            return losses(net, diffusion, batch, step, job, **kwargs)

        hypertrain.pair_losses = pair_losses
    else:
        raise ValueError(f"FAIL_AT={where}")


if __name__ == "__main__":
    if os.environ["RANK"] == os.environ["FAIL_RANK"]:
        _fail_here()
    from lowdim_cli.main import script

    script()
