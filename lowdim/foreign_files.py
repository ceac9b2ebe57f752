"""What a file handed over where a lowdim .safetensors goes really is, told from its first bytes (a pickle, an
image, a text file) or from its tensor names (another tool's LoRA, a Textual Inversion embedding, a whole model
checkpoint), and the one line that says so and where it is used instead."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from lowdim import json_text
from lowdim.errors import LowdimError

if TYPE_CHECKING:
    from lowdim.backends import Backend

# Tensor names of other tools' LoRA layouts: peft's (and diffusers', which runs peft), and the flattened one whose
# first name component starts "lora_" (lora_unet_..., lora_te1_..., LyCORIS' LoHa and LoKr).
PEFT_LORA = (".lora_A.weight", ".lora_B.weight", ".lora.down.weight", ".lora.up.weight",
             ".lora_linear_layer.down.weight", ".lora_linear_layer.up.weight")
FLAT_LORA = (".lora_down.weight", ".lora_up.weight", ".hada_w1_a", ".lokr_w1")
# The formats lowdim export records (metadata lora_format, embedding_format) and these readers name: what a file is.
LORA_STYLES = {"diffusers": "diffusers/peft", "kohya": "kohya"}
EMBEDDING_STYLES = ("diffusers", "a1111")

# What files handed over where a .safetensors goes open with (a preview.png, a photo): named by their first
# bytes, whatever their name says. BMP's "BM" is left out: too short to tell from a text file.
IMAGE_MAGIC = ((b"\x89PNG", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"), (b"II*\x00", "TIFF"),
               (b"MM\x00*", "TIFF"))
# safetensors refuses a longer header; a pickle's first 8 bytes, read as a length, are far more.
LONGEST_HEADER = 100_000_000
HEAD = 512  # bytes read to tell a text file: enough for a line or two, never a whole file


def describe_foreign(path: Path) -> str | None:
    """What a file handed over as safetensors really is, when its first bytes say so: a safetensors file cut
    short (in its header or in its tensor data), a pickle or zip checkpoint, an image, a JSON or text file (None:
    a whole safetensors file, or no idea; safetensors' own error then says what is wrong). One open of the file."""
    with open(path, "rb") as handle:
        head = handle.read(HEAD)
        header_length = int.from_bytes(head[:8], "little")
        if len(head) > 8 and head[8:9] == b"{" and header_length <= LONGEST_HEADER:
            # That length's first bytes can read as a pickle's opcode (0x280 opens 80 02): told before any other kind
            return _cut_short(handle, head, header_length, os.fstat(handle.fileno()).st_size)
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (a torch.save pickle checkpoint?), not safetensors"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "a pickle (torch.save / pickle.dump), not safetensors"
    image = next((name for magic, name in IMAGE_MAGIC if head.startswith(magic)), None)
    if image is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        image = "WebP"
    if image is not None:
        return f"a {image} image, not safetensors"
    return _text(head)


# The end offset of a tensor's data as the header states it. Scanned, not parsed: a reader's own bounds decide
# whether a header's text is parsed at all (a 16 MB layer list is refused unparsed), and in a JSON string these
# quotes would be escaped.
_DATA_END = re.compile(rb'"data_offsets"\s*:\s*\[\s*\d+\s*,\s*(\d+)\s*\]')


def _cut_short(handle: BinaryIO, head: bytes, header_length: int, size: int) -> str | None:
    """A safetensors file (its JSON header's length, then "{") is one however short it is: cut short when its
    header alone, or its header and the tensor data it lists, need more bytes than it holds (an interrupted copy or
    download), else None."""
    if header_length + 8 > size:
        return f"{CUT_SHORT} (its header alone is {header_length + 8} bytes, the file holds {size})"
    header = head[8:8 + header_length] + handle.read(max(0, header_length - (len(head) - 8)))
    ends = [int(end) for end in _DATA_END.findall(header)]
    needed = header_length + 8 + max(ends, default=0)
    return f"{CUT_SHORT} (its tensors need {needed} bytes, the file holds {size})" if needed > size else None


def safetensors_metadata(path: Path) -> dict[str, str] | None:
    """The ``__metadata__`` of a file that opens as a safetensors file ({} when it has none), read from its header
    alone, whether or not its tensors are all there; None for any other file."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    header_length = int.from_bytes(head[:8], "little")
    if len(head) < 9 or head[8:9] != b"{" or header_length > LONGEST_HEADER:
        return None
    header = _header(path, header_length)
    metadata = header.get("__metadata__", {}) if header is not None else None
    return {str(key): str(value) for key, value in metadata.items()} if isinstance(metadata, dict) else None


def _header(path: Path, header_length: int) -> dict | None:
    """A safetensors file's JSON header (``header_length`` is at most LONGEST_HEADER, as safetensors reads it), or
    None where those bytes are missing or not a JSON object."""
    with open(path, "rb") as handle:
        handle.seek(8)
        raw = handle.read(header_length)
    try:
        header = json_text.loads(raw.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    return header if isinstance(header, dict) and len(raw) == header_length else None


CUT_SHORT = "a .safetensors file cut short"


def fix_for(foreign: str, otherwise: str) -> str:
    """What to do about a file ``describe_foreign`` named: a cut one is to be copied again, whatever the reader
    takes; any other kind gets the reader's own advice (``otherwise``)."""
    return "copy or download it again: an interrupted copy leaves such a file" if foreign.startswith(CUT_SHORT) \
        else otherwise


def _text(head: bytes) -> str | None:
    """'a JSON file' / 'a text file' when ``head`` is printable UTF-8. A safetensors header's length (its first
    8 bytes, little-endian) holds zero bytes for any header under 72 PB, so no safetensors file reads as text."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:  # a multi-byte character cut at HEAD bytes is still text
        if len(head) < HEAD or error.start < len(head) - 3:
            return None
        text = head[:error.start].decode("utf-8")
    if not text.strip() or any(not char.isprintable() and char not in "\t\n\r" for char in text):
        return None
    kind = "JSON" if text.lstrip()[:1] in ("{", "[") else "text"
    return f"a {kind} file, not safetensors"


def foreign_lora(keys: Iterable[str], metadata: Mapping[str, str]) -> str | None:
    """'diffusers/peft' or 'kohya' when the tensor names are another tool's LoRA layout."""
    keys = list(keys)
    if metadata.get("lora_format") in LORA_STYLES:
        return LORA_STYLES[metadata["lora_format"]]
    if any(key.endswith(PEFT_LORA) for key in keys):
        return LORA_STYLES["diffusers"]
    if any(key.endswith(FLAT_LORA) or key.startswith("lora_") for key in keys):
        return LORA_STYLES["kohya"]
    return None


def embedding_style(keys: Iterable[str], metadata: Mapping[str, str]) -> str | None:
    """The format's name ('a1111' or 'diffusers', as lowdim export records it) when the file is a plain Textual
    Inversion embedding (one lowdim exported, or another tool's in the ``emb_params`` / ``string_to_param`` layout)."""
    keys = list(keys)
    if metadata.get("embedding_format") in EMBEDDING_STYLES:
        return metadata["embedding_format"]
    if keys == ["emb_params"] or any(key.startswith("string_to_param") for key in keys):
        return EMBEDDING_STYLES[1]
    return None


EMBEDDING, LORA = "embedding", "lora"


@dataclass(frozen=True)
class ForeignFile:
    """A safetensors file handed over where a lowdim one goes, as the core tells it: ``what`` it is (EMBEDDING, LORA,
    or what a backend named it), in which ``style`` (a format's name, or ""), and its tensor names and metadata, for a
    backend to say where such a file is used instead (``Backend.foreign_file_advice``)."""

    what: str
    style: str
    keys: tuple[str, ...]
    metadata: Mapping[str, str]

    @property
    def exported_from(self) -> str:
        """The adapter lowdim export made it of ("" for another tool's file): the one lowdim draws with."""
        return self.metadata.get("source_adapter", "")


def not_ours(path: Path, kind: str, metadata: Mapping[str, str], keys: Iterable[str]) -> str:
    """The one line for a safetensors file that is not a lowdim ``kind``: what it is, and where it is used instead
    when an installed backend says so."""
    keys, source = tuple(keys), metadata.get("source_adapter")  # what lowdim export records
    embedding = embedding_style(keys, metadata)
    if embedding is not None:
        use = _advice(ForeignFile(EMBEDDING, embedding, keys, metadata))
        return (f"{path}: this is a Textual Inversion embedding ({embedding} format), not a lowdim {kind}"
                f"{f': {use}' if use else ''}; lowdim draws with the adapter file it was exported from"
                + (f", {_quoted(source)}" if source else ""))
    style = foreign_lora(keys, metadata)
    if style is not None:
        use = _advice(ForeignFile(LORA, style, keys, metadata)) or "use it with peft (PeftModel.from_pretrained)"
        return (f"{path}: this is a {style} LoRA{' lowdim exported' if source else ''}, not a lowdim {kind}: {use}; "
                + (f"lowdim reads the adapter file it was exported from, {_quoted(source)}" if source else
                   "lowdim reads only the adapter files it writes (lowdim export makes LoRAs of them)"))
    named = _backend_words(lambda backend: backend.foreign_file_kind(keys))
    if named is not None:
        use = _advice(ForeignFile(named, "", keys, metadata))
        return f"{path}: {named}, not a lowdim {kind}" + (f": {use}" if use else "")
    return f"{path}: not a lowdim {kind} (metadata 'format' is {metadata.get('format')!r})"


def _advice(file: ForeignFile) -> str | None:
    """Where ``file`` is used instead, as the first installed backend that knows says it (None: none does)."""
    return _backend_words(lambda backend: backend.foreign_file_advice(file))


def _backend_words(ask: Callable[[Backend], str | None]) -> str | None:
    """The first answer of the registered backends to ``ask``; None where none answers, or none can be read (a
    refused file's line must come whatever the plugins do)."""
    from lowdim.registry import get_registry  # the registry loads plugins: only for a file that is not lowdim's

    try:
        backends = [entry.value for entry in get_registry().backends.values()]
    except LowdimError:
        return None
    return next((said for backend in backends if (said := ask(backend))), None)


def _quoted(text: str, longest: int = 120) -> str:
    """A name from a file's header in one printed line: quoted and escaped, cut to about ``longest`` characters."""
    shown = ascii(text)
    return shown if len(shown) <= longest else shown[:longest - longest // 6] + "...'"
