"""What ``lowdim precompute`` keeps of an earlier run's folder, what it writes per identity, and what a stop says.

A resume skips the identities the index names, except those whose pictures changed since they were trained (another
photo under the same name, a photo added to or removed from a sub-folder): those are trained again, their new entry
replacing the old, as are those whose shard row holds NaN or Inf. Shards no index names (a stop between a shard's
rename and its index line) are removed. An identity whose pictures are all gone (its sub-folder deleted) leaves the
index, and its row in a shard is erased. While another run reads the folder (a live train-hypernet:
``lowdim_sd.weight_readers``), no shard is removed and no row erased: a later run does it. Each identity's noise
seed comes from its name, so identities added between runs never take another's seed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from lowdim import json_text
from lowdim.errors import LowdimError
from lowdim.option_words import counted
from lowdim_sd import runs
from lowdim_sd.precompute_header import precompute_worded
from lowdim_sd.weight_index import (
    FORMAT,
    INDEX,
    done_identities,
    generation,
    image_digest,
    read_json,
    recorded_digests,
    write_json,
)
from lowdim_sd.weight_readers import live_readers, readers_words

if TYPE_CHECKING:
    from collections.abc import Callable

    from lowdim_sd.precompute import Identity
    from lowdim_sd.precompute_batches import Kept

SHARD = re.compile(r"^shard-(?:p(\d+)-)?\d+\.safetensors$")


def take_over(out: Path, header: dict, identities: list[Identity], index_path: Path, rank: int, processes: int,
              say: Callable[[str], None], present: set[str] | None = None
              ) -> tuple[dict[str, dict], dict[str, dict], dict]:
    """What a run into ``out`` starts from: the done identities (name: entry), the changed ones it trains again
    (name: old entry) and this process's part of the index, once other settings are refused, a moved root
    recorded, identities no longer ``present`` (every name under the root, past --limit too) forgotten and
    orphan shards removed. ``identities``: this process's share."""
    # Before own_index records a moved root: that it is a move. Under `lowdim precompute`, a refusal names flags.
    done = done_identities(out, header, worded=precompute_worded())
    own = own_index(index_path, header, say)
    # A live reader (train-hypernet) may open any shard its index named: removing or rewriting one would end it
    # hours in, or feed it zeros. Its shards stay and a later run sweeps them; this run's training goes on.
    readers = live_readers(out)
    if present is not None:
        done = forget_gone(done, present, out, own, index_path, rank, processes, readers)
    done, replaced = forget_changed(done, identities, Path(header["root"]), own, index_path)
    done, damaged = forget_nonfinite(done, identities, out, own, index_path)
    replaced |= damaged
    if readers:
        if kept := orphan_shards(out, rank, processes):
            warnings.warn(kept_orphans_line(out, kept, readers), stacklevel=3)
    elif removed := remove_orphan_shards(out, rank, processes):
        say(orphans_line(removed))
    record_asked(own, len(identities), index_path, out, rank, processes)
    return done, replaced, own


# The index field that says how many identities the latest one-process run was asked for (past --limit, none): an
# index that holds fewer is of a run stopped before its end, even between two batches, when no batch folder is left
# (``lowdim show`` says so: ``stopped_precompute_info``). Each batch's index write carries it, from ``own``.
ASKED = "identities_asked"


def record_asked(own: dict, asked: int, index_path: Path, out: Path, rank: int, processes: int) -> None:
    """Record in ``own`` (one process: the index) that this run was asked for ``asked`` identities, written at once
    where the index is on disk (a stop before the first batch then leaves the new count; a first run writes its
    index after its first batch). Under several processes the parts' own lines say a run is unfinished: the main
    process removes the count an earlier one-process run left in ``index.json``, which the merge would carry over
    while the identities it counted may be gone since."""
    if processes > 1:
        if rank == 0 and (out / INDEX).is_file() and ASKED in (index := read_json(out / INDEX)):
            write_json(out / INDEX, {key: value for key, value in index.items() if key != ASKED})
        return
    if own.get(ASKED) == asked:
        return
    own[ASKED] = asked
    if index_path.is_file():
        write_json(index_path, own)


def own_index(path: Path, header: dict, say: Callable[[str], None]) -> dict:
    """This process's part of the index: as far as an earlier run got, else a new one of ``header``."""
    own = read_json(path) if path.is_file() else {**header, "identities": []}
    if own["root"] != header["root"]:  # the identities moved (checked by done_identities): record where to
        say(f"the identities moved from {own['root']} to {header['root']}; the index now names the latter")
        own["root"] = header["root"]
        write_json(path, own)
    return own


def identity_seed(seed: int, name: str, shared_noise: bool) -> int:
    """An identity's noise seed (its draws of noise, timesteps and augmentations): from ``--seed`` and its name,
    so batching, the process split and identities added or removed between runs leave it alone, and two names
    share one with odds of about 1 in 10^10 at 30,000 identities. Folders made when it was ``--seed + position``
    keep the seeds they recorded; a new identity's 63-bit seed is as unlikely to meet one of those."""
    if shared_noise:
        return seed
    digest = hashlib.sha256(f"identity:{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def index_entry(identity: Identity, digests: list[str], shard: str, row: int, seed: int, root: Path,
                replaced: dict | None) -> dict:
    """An identity's index entry: where its θ is, the pictures it was trained on and ``digests``, one per picture,
    of the bytes its training read (what a resume and train-hypernet compare with the folder), and, for one trained
    again, its generation."""
    entry = {"name": identity.name, "shard": shard, "row": row, "seed": seed,
             "images": [relative(path, root) for path in identity.images], "digest": digests[0], "digests": digests}
    if replaced is not None:  # read_index keeps the highest generation, wherever the old entry is
        entry["generation"] = generation(replaced) + 1
    return entry


def relative(path: Path, root: Path) -> str:
    """An identity's image as the index records it: its path inside ``root`` (resolved), which train-hypernet
    requires. A picture that is a link out of the folder (or in a linked sub-folder) is named by where it was found
    under the root, not where the link leads."""
    resolved = Path(path).resolve()
    if resolved.is_relative_to(root):
        return str(resolved.relative_to(root))
    found = Path(os.path.abspath(path))
    for above in found.parents:
        if above.resolve() == root:
            return str(found.relative_to(above))
    return str(resolved)


def recorded_now(entry: dict, identity: Identity, root: Path) -> list[str]:
    """``entry``'s images as this lowdim records them. Before 1ef893c, precompute named a picture that resolves
    outside the root (a link into a data set) by that absolute resolved path; such a path names the picture now
    found under the root that resolves to the same file, or else (the links replaced by copies, the data set moved)
    the identity's picture with the bytes recorded for it, so the folder is not retrained for a change of name."""
    under_root = {str(Path(path).resolve()): relative(path, root) for path in identity.images}
    digests = recorded_digests(entry)
    by_bytes: dict[str, str] = {}  # read only when a path is neither there nor linked to

    def now(number: int, image: str) -> str:
        if not Path(image).is_absolute():
            return image
        if image in under_root:
            return under_root[image]
        if number >= len(digests):  # an index too old to say which bytes it was
            return image
        if not by_bytes:  # reversed: of two pictures with the same bytes, the first is named
            by_bytes.update({image_digest(path): relative(path, root) for path in reversed(identity.images)})
        return by_bytes.get(digests[number], image)

    return [now(number, image) for number, image in enumerate(entry["images"])]


def changed_since(entry: dict, identity: Identity, root: Path) -> str | None:
    """What of ``identity``'s pictures is not what ``entry`` was trained on ('b.png changed'), or None. Where the
    index recorded only the first image's digest, that is all that can be compared."""
    now = [relative(path, root) for path in identity.images]
    recorded = recorded_now(entry, identity, root)
    for image in now:
        if image not in recorded:
            return f"{Path(image).name} added"
    for image in recorded:
        if image not in now:
            return f"{Path(image).name} removed"
    for image, digest in zip(recorded, recorded_digests(entry), strict=False):
        if image_digest(root / image) != digest:
            return f"{Path(image).name} changed"
    return None


def forget_changed(done: dict[str, dict], identities: list[Identity], root: Path, own: dict,
                   index_path: Path) -> tuple[dict[str, dict], dict[str, dict]]:
    """``done`` less the identities whose pictures changed, and those (name: old entry), with a one-line warning.

    Their old entries leave this process's part of the index now (in another part, the new entry's higher
    generation passes over them): stopped before they are trained again, they are simply not done. The unchanged
    ones that an older lowdim recorded by absolute paths are recorded by their paths under the root."""
    changed = {identity.name: why for identity in identities if identity.name in done
               and (why := changed_since(done[identity.name], identity, root)) is not None}
    renamed = record_under_root(own, [identity for identity in identities if identity.name in done
                                      and identity.name not in changed], root)
    if not changed:
        if renamed:
            write_json(index_path, own)
        return done, {}
    shown = [f"{name}: {why}" for name, why in list(changed.items())[:3]] + (["..."] if len(changed) > 3 else [])
    warnings.warn(f"{shown[0]} since it was precomputed; training it again" if len(changed) == 1 else
                  f"{len(changed)} done identities changed since they were precomputed ({', '.join(shown)}); "
                  f"training them again", stacklevel=3)
    kept = [entry for entry in own["identities"] if entry["name"] not in changed]
    if len(kept) < len(own["identities"]) or renamed:
        own["identities"] = kept
        write_json(index_path, own)
    return ({name: entry for name, entry in done.items() if name not in changed},
            {name: done[name] for name in changed})


def forget_nonfinite(done: dict[str, dict], identities: list[Identity], out: Path, own: dict,
                     index_path: Path) -> tuple[dict[str, dict], dict[str, dict]]:
    """``done`` less those of ``identities`` whose shard row holds NaN or Inf (a diverged identity kept by an older
    lowdim, a damaged copy), and those (name: old entry), trained again as a changed one is, with one line naming
    the shard and identity: else the resume calls the folder complete and train-hypernet refuses it."""
    from lowdim_sd.weight_shards import nonfinite_line, nonfinite_rows

    damaged = nonfinite_rows(out, [done[identity.name] for identity in identities if identity.name in done])
    if not damaged:
        return done, {}
    (name, where), more = next(iter(damaged.items())), len(damaged) - 1
    others = f" (and {counted(more, 'other identity', plural='other identities')})" if more else ""
    warnings.warn(f"{nonfinite_line(name, where)}{others}; training {'them' if more else 'it'} again", stacklevel=3)
    kept = [entry for entry in own["identities"] if entry["name"] not in damaged]
    if len(kept) < len(own["identities"]):  # in another process's part, the new entry's generation passes over it
        own["identities"] = kept
        write_json(index_path, own)
    return ({name: entry for name, entry in done.items() if name not in damaged},
            {name: done[name] for name in damaged})


def record_under_root(own: dict, unchanged: list[Identity], root: Path) -> bool:
    """Name the pictures of ``unchanged`` identities in ``own`` (this process's part) as this lowdim does, where an
    older lowdim named them by absolute paths; whether any entry changed. (Entries of another part, such as
    ``index.json`` under several processes, keep their absolute paths, which train-hypernet reads as well.)"""
    by_name = {identity.name: identity for identity in unchanged}
    renamed = False
    for entry in own["identities"]:
        identity = by_name.get(entry["name"])
        if identity is not None and (now := recorded_now(entry, identity, root)) != entry["images"]:
            entry["images"], renamed = now, True
    return renamed


def forget_gone(done: dict[str, dict], present: set[str], out: Path, own: dict, index_path: Path, rank: int,
                processes: int, readers: list[str] | None = None) -> dict[str, dict]:
    """``done`` less the identities no longer under the root, whose entries leave this process's part (and, for
    the main process of several, ``index.json``) with their shard rows erased: a person taken out of the data
    set leaves nothing of theirs behind. The main process says so, once. While other runs read ``out``
    (``readers``), all stays as it is, and the main process says why."""
    gone = sorted(set(done) - present)
    if not gone:
        return done
    if readers:
        if rank == 0:
            warnings.warn(f"{_gone_words(gone, own['root'])}, but {readers_words(out, readers)}: "
                          f"{'its' if len(gone) == 1 else 'their'} weights stay there until a lowdim precompute "
                          f"into {out} runs with no run reading it", stacklevel=3)
        return done
    parts = [(index_path, own)]
    if processes > 1 and rank == 0 and (out / INDEX).is_file():
        parts.append((out / INDEX, read_json(out / INDEX)))
    for path, index in parts:
        leaving = [entry for entry in index["identities"] if entry["name"] in gone]
        if leaving:
            erase_rows(out, leaving)
            index["identities"] = [entry for entry in index["identities"] if entry["name"] not in gone]
            write_json(path, index)
    if rank == 0:
        warnings.warn(f"{_gone_words(gone, own['root'])}: removed from the index, and "
                      f"{'its' if len(gone) == 1 else 'their'} weights erased from {out}", stacklevel=3)
    return {name: entry for name, entry in done.items() if name not in gone}


def _gone_words(gone: list[str], root: str) -> str:
    names = ", ".join(gone[:3]) + (", ..." if len(gone) > 3 else "")
    who = f"{names} has" if len(gone) == 1 else f"{len(gone)} done identities ({names}) have"
    return f"{who} no pictures under {root} any more"


def erase_rows(out: Path, entries: list[dict]) -> None:
    """Zero the shard rows of ``entries`` and blank their names in the shards' metadata (the row numbers of the
    others stay). A shard left with no named row is removed afterwards, as an orphan."""
    from safetensors import safe_open

    from lowdim.files import atomic_save

    for shard in sorted({entry["shard"] for entry in entries}):
        path = out / shard
        if not path.is_file():
            continue
        with safe_open(str(path), framework="pt") as opened:
            metadata, tensors = opened.metadata() or {}, {key: opened.get_tensor(key) for key in opened.keys()}  # noqa: SIM118
        rows = [entry["row"] for entry in entries if entry["shard"] == shard]
        for tensor in tensors.values():
            tensor[rows] = 0
        try:
            names = json_text.loads(metadata.get("identities", "[]"))
        except ValueError as error:  # nested too deeply included
            raise LowdimError(f"{path}: the identities in its metadata are not readable JSON ({error})") from None
        metadata["identities"] = json.dumps(["" if row in rows else name for row, name in enumerate(names)])
        atomic_save(tensors, metadata, path)


def remove_orphan_shards(out: Path, rank: int, processes: int) -> list[str]:
    """Remove the shards no index part names: written whole by a stop that came before their index line, or
    whose identities were all trained again (their new entries replaced the old in this process's part).

    Under several processes each removes only its own (``shard-pR-``): another may be between those two writes
    right now. Plain ``shard-N`` ones, which no process of such a run writes, fall to the main process."""
    orphans = orphan_shards(out, rank, processes)
    for path in orphans:
        path.unlink(missing_ok=True)
    return [path.name for path in orphans]


def orphan_shards(out: Path, rank: int, processes: int) -> list[Path]:
    """The shards no index part names that this process may remove (see ``remove_orphan_shards``)."""
    parts = [out / INDEX] if (out / INDEX).is_file() else []
    named = {entry.get("shard") for path in parts + sorted(out.glob("index-p*.json"))
             for entry in read_json(path).get("identities", [])}

    def ours(owner: str | None) -> bool:
        return processes == 1 or (int(owner) == rank if owner is not None else rank == 0)

    return sorted(path for path in out.iterdir() if (match := SHARD.match(path.name)) and ours(match.group(1))
                  and path.name not in named and _is_shard(path))


def _is_shard(path: Path) -> bool:
    """Whether ``path`` is a precompute shard (by its metadata): a file of another tool under the name stays."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as opened:
            return (opened.metadata() or {}).get("format") == FORMAT + ".shard"
    except Exception:  # unreadable, or not safetensors at all: not for us to remove
        return False


def orphans_line(removed: list[str]) -> str:
    shards = "shard" if len(removed) == 1 else "shards"
    return (f"removed {len(removed)} {shards} no index names (a stop before its index line, or all its identities "
            f"trained again): "
            f"{', '.join(removed[:3])}{', ...' if len(removed) > 3 else ''}")


def kept_orphans_line(out: Path, kept: list[Path], readers: list[str]) -> str:
    names = ", ".join(path.name for path in kept[:3]) + (", ..." if len(kept) > 3 else "")
    shards = "1 shard" if len(kept) == 1 else f"{len(kept)} shards"
    return (f"kept {shards} no index names ({names}) while {readers_words(out, readers)}; a later lowdim "
            f"precompute into {out}, with no run reading it, removes {'it' if len(kept) == 1 else 'them'}")


def stop_note(stop: BaseException, trained: int, kept: int, index_path: Path, rank: int, processes: int,
              batch: Kept | None = None) -> str:
    """The one line of a stopped precompute: what this process trained and what is on disk (``kept``: the entries
    its index file holds; ``batch``: the steps of the batch in flight its folder keeps, which a rerun resumes). Under
    several processes, one that kept nothing says so of itself only: the others may have kept identities, which a
    rerun continues from, naming its process; a later line from a process other than the main one starts
    ``process R of P:``. A stop that came with another process's failure is said in that failure's line, which the
    ``lowdim`` command starts with this process's name already (``cli.errors.launched_process``): not twice."""
    what = runs.stop_word(stop)
    resumed = f", and the batch resumes at step {batch.step}" if batch else ""
    named = processes > 1 and rank > 0 and not _with_another_failure(stop)  # else the main one's, or named already
    if processes > 1 and not trained:  # a process killed outright says nothing: "if any"
        its = f"; it kept {batch.words}" if batch else ""
        which = f"process {rank + 1} of {processes}" if named or not rank else "this process"
        return (f"{what} during the first batch of {which}, so it added nothing to {index_path.parent} (the other "
                f"processes' lines, if any, say what they kept){its}; {runs.RERUN} to continue: done identities are "
                f"skipped{resumed}")
    whose = f"process {rank + 1} of {processes}: " if named else ""  # the lines look alike
    if not kept and batch:  # the first batch's steps alone
        return (f"{whose}{what} during the first batch; kept {batch.words}; {runs.RERUN} to continue from step "
                f"{batch.step}")
    if not kept:  # no index was written, and the folder made for it is cleared away
        return f"{whose}{what} during the first batch, so nothing was kept; {runs.RERUN} to start over"
    in_flight = f", and {batch.words}" if batch else " (the batch in flight is lost)"
    return (f"{whose}{what} with {counted(trained, 'identity', plural='identities')} trained in this run; {kept} "
            f"{'is' if kept == 1 else 'are'} kept in {index_path}{in_flight}; {runs.RERUN} to continue: done "
            f"identities are skipped{resumed}")


def _with_another_failure(stop: BaseException) -> bool:
    """Whether this Ctrl-C-like stop came with another process's failure, posted to the launcher's store:
    ``process_failures.failing_together`` then makes this stop's line part of that failure's (an out-of-memory
    stop stays this process's own error)."""
    from lowdim_sd.process_failures import LaunchedRun

    run = LaunchedRun.connect() if isinstance(stop, KeyboardInterrupt) else None
    try:
        return run is not None and run.failure() is not None
    except RuntimeError:  # the launcher's store is gone, and with it any line of another process
        return False
