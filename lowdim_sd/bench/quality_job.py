"""What a ``lowdim bench quality`` run is asked to do (``QualityJob``) and its unit of work (``Task``).

``check_job`` (lowdim_sd.bench.quality) fills in the rows and prompts left to their defaults; what runs after it
reads them through ``checked_methods`` and ``checked_prompts``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lowdim_sd.job_fields import (
    Converted,
    OptionalPathField,
    PathField,
    job_dataclass,
    optional_path,
    path_field,
)

DEFAULT_METRICS = ("tinyfaces-identity", "tinyfaces-image", "tinyfaces-style")


# The path fields take a str as the CLI's Path (job_fields), so a script's QualityJob(hypernet="h.safetensors")
# runs as `--hypernet h.safetensors` does, not an AttributeError from the first check that reads the file.
@job_dataclass
class QualityJob:
    # a flat folder: one reference image per held-out identity (tabulating: optional)
    identities: OptionalPathField = Converted(convert=optional_path)
    model: str = "tinyfaces"
    model_config: str | None = None  # a single-file checkpoint's diffusers config (hub id or folder), offline
    out: PathField = path_field(default=Path("bench-quality"))
    methods: list[str] | None = None  # None: every row the model can run (check_job fills it in)
    prompts: list[str] | None = None  # default: the backend's bench_prompts
    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_METRICS))
    hypernet: OptionalPathField = path_field(default=None)  # None: the model's shipped one, where a row needs one
    limit: int | None = None  # use only the first N identities (sorted by name)
    token: str = "sks"
    seed: int = 0
    sample_steps: int = 25
    guidance: float = 4.0
    workers: int = 1
    batch_subjects: int = 1  # > 1: adapter DreamBooth and TI rows train this many identities at once (same result)
    threads: int | None = None  # torch threads per worker (default: cores / workers)
    device: str = "auto"
    dtype: str = "fp32"
    gallery_identities: int = 4  # rows of gallery.png
    gallery_prompts: list[int] | None = None  # its columns, prompt numbers; None: 0, 3, 5 of those there are
    gallery_methods: list[str] | None = None  # the rows shown (default: every row with results)
    left_out: dict[str, str] = field(default_factory=dict)  # default rows check_job left out, and why

    def __post_init__(self) -> None:
        # A bare str (a script's methods="only-hyper") is one entry, not its letters one by one.
        for name in ("methods", "prompts", "metrics", "gallery_methods"):
            if isinstance(getattr(self, name), str):
                setattr(self, name, [getattr(self, name)])

    def checked_methods(self) -> list[str]:
        """The rows, once ``check_job`` has filled in the default ``methods``."""
        if self.methods is None:
            raise RuntimeError("job.methods is filled in by check_job(job): call it first")
        return self.methods

    def checked_prompts(self) -> list[str]:
        """The prompts, once ``check_job`` has filled in the default (the backend's ``bench_prompts``)."""
        if self.prompts is None:
            raise RuntimeError("job.prompts is filled in by check_job(job): call it first")
        return self.prompts


def check_words(job: QualityJob) -> None:
    """The token is one word and each prompt one line, refused naming the setting with the value escaped: every prompt
    is drawn with the token put in for [V] and captions gallery.png, and both are recorded in settings.json, which a
    resume compares and a tabulation reads back (where ``stored_values`` refuses the same values the same way)."""
    from lowdim.errors import LowdimError
    from lowdim.option_words import option
    from lowdim_sd.bench.stored_values import Damaged, one_word, prompt_line

    try:
        one_word(job.token, option("token", "QualityJob"))
        for prompt in job.checked_prompts():
            prompt_line(prompt, option("prompts", "QualityJob", "--prompt"))
    except Damaged as why:
        raise LowdimError(str(why)) from None


@dataclass(frozen=True)
class Task:
    method: str
    identity: str
    reference: str
