"""How ``train-hypernet``'s messages name a ``HyperTrainJob`` setting, for the reader at hand: its flag under the
``lowdim`` command (``--lr``), ``HyperTrainJob(learning_rate=...)`` from Python (``lowdim.option_words``). One
place for the checks, the retrieval head's fill and the loop alike."""

from __future__ import annotations

from lowdim.option_words import Wording, either, option

OWNER = "HyperTrainJob"
FLAGS = {"learning_rate": "--lr"}  # the fields whose flag is not the field's name with dashes
# A random encoder in place of a pretrained one: the command's --encoder-config tiny is TINY_ENCODER's config.
RANDOM_ENCODER = Wording("--encoder-config tiny", 'hyper={"encoder_config": TINY_ENCODER} (lowdim_sd.hypertrain)')


def name(field: str, flag: str | None = None) -> str:
    """A HyperTrainJob field as this reader gave it: ``--lr`` (or ``flag``) on the command line,
    ``HyperTrainJob(...=...)`` from Python."""
    return option(field, OWNER, flag or FLAGS.get(field))


def hyper_key(key: str) -> str:
    """A HyperConfig option of ``job.hyper``: its flag on the command line, the dict's key from Python."""
    return either("--" + key.replace("_", "-"), f'hyper={{"{key}": ...}}')
