"""What ``lowdim train-hypernet`` is asked (``HyperTrainJob``: one field per CLI option) and what it answers
(``HyperTrainResult``); the run itself is ``lowdim_sd.hypertrain``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lowdim_sd import defaults
from lowdim_sd.job_fields import OptionalPathField, PathField, PathsField, job_dataclass, path_field, paths_field
from lowdim_sd.weight_dataset import Folders

if TYPE_CHECKING:
    from lowdim.hyper.head import HyperHead


@job_dataclass
class HyperTrainJob:
    """Everything ``lowdim train-hypernet`` needs; one field per CLI option."""

    weights: Folders  # a `lowdim precompute` folder, or several made alike
    model: str | None = None  # default: the model the weights were made with
    out: PathField = path_field(default=Path("hypernet"))  # the path fields take a str too (job_fields)
    hyper: dict = field(default_factory=dict)  # HyperConfig options: encoder, encoder_config, width, iterations...
    steps: int = defaults.HYPERNET_STEPS
    max_minutes: float | None = None  # stop early (and save as usual) once training has run this long
    batch_size: int = 4  # per process
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    alpha: float = 1.0  # diffusion term
    beta: float = 1.0  # weight term
    diffusion_iterates: str = "all"  # "all": D on every θ̂_k; "last": on θ̂_s only (s times cheaper)
    # "noise": D regresses the noise (eq. 2); "teacher": the model's own prediction with the target θ
    diffusion_target: str = "noise"
    # Folders of identities without a precomputed θ: each step adds extra_batch_size of them to D only
    extra_images: PathsField = paths_field(default=())
    extra_batch_size: int | None = None  # default: batch_size
    # A frozen encoder's features, precomputed (`lowdim encoder-features`): its package need not be here
    features: OptionalPathField = path_field(default=None)
    image_root: OptionalPathField = path_field(default=None)  # where the identity images are now, if moved since
    # Retrieval head with key_dim: photos of the same people (one sub-folder each) to learn its keys from
    key_pairs: OptionalPathField = path_field(default=None)
    key_steps: int = 750
    key_renders: int = 0  # retrieval head: also key each stored θ by this many images the model makes with it
    val_fraction: float = 0.0
    val_identities: int | None = None  # overrides val_fraction
    val_every: int = 100
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    resume: bool = False
    overwrite: bool = False  # start over on an earlier run's checkpoints, split, log and hypernetwork in out
    seed: int = 0
    augment: bool = True
    all_images: bool = False  # one pair per image instead of per identity (first image)
    prompt: str | None = None  # default: the precompute prompt
    token: str | None = None
    max_grad_norm: float | None = 1.0  # 0 or None: no clipping
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    num_workers: int = 0
    cpu: bool = False
    dtype: str = "auto"
    model_config: str | None = None


@dataclass
class HyperTrainResult:
    path: Path  # the final hypernet.safetensors
    start_step: int = 0
    losses: list[float] = field(default_factory=list)  # this run's training losses, one a step
    train_names: list[str] = field(default_factory=list)
    val_names: list[str] = field(default_factory=list)
    metrics: Path | None = None
    seconds: float = 0.0
    main_process: bool = True  # False in the other processes of a distributed run
    # The last held-out record of metrics.jsonl (weight_loss, weight_loss_vs_mean, diffusion_loss...), as the run
    # printed it; None without held-out identities, and in the other processes.
    validation: dict | None = None
    # The network saved at path, in eval mode as load_hypernet returns it (main process; None for the retrieval
    # head, which load_hypernet(path) rebuilds). Left out of the repr: a module's runs to hundreds of lines.
    net: HyperHead | None = field(default=None, repr=False)
    # The retrieval head trains no steps: it fills its bank, after key_steps of its key embedding (0 without one).
    filled_bank: bool = False
    key_steps: int = 0
