"""The words [V] stands for where no --token names one: those a merged model was taught, and the check of the
word an adapter file records.

A model `lowdim merge` wrote holds its adapters in its weights, so no adapter file is left to say which word calls
its subject: `lowdim generate -m MERGED -p 'a [V] face'` reads the words from the record merge left in it
(``merged_tokens``, as ``SDModel.taught``; `lowdim show` reads the same record).

An adapter file's recorded token is checked before any command uses it (``check_recorded_token``: generate's and
merge's -a, train's --init, export, the ui's Draw), and ``lowdim show`` says the same problem in its row
(``token_problem``): a character that is not printable is refused, a space is not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lowdim.errors import AdapterFileError
from lowdim.filecheck import printable_name
from lowdim.paths import expand_user

if TYPE_CHECKING:
    from lowdim.files import AdapterFile


def merged_tokens(source: str) -> list[str] | None:
    """The tokens a model `lowdim merge` wrote records, [] where its record names none; None for any other
    model."""
    from lowdim_sd.merged_model import read_merge_record

    record = read_merge_record(expand_user(source))
    if record is None:
        return None
    words = record.get("tokens")
    # A record from someone else's merge: only words a prompt can hold, so none carries a terminal's escape codes
    # into a warning or the prompt (a TI token is checked the same way when its file is read).
    return [word for word in words if _a_word(word)] if isinstance(words, list) else []


def _a_word(word: object) -> bool:
    from lowdim_sd.textual_inversion import MAX_TOKEN

    return isinstance(word, str) and 0 < len(word) <= MAX_TOKEN and word.isprintable()


def recorded_word_problem(word: str) -> str | None:
    """Why ``word``, the token an adapter file records, cannot stand for [V]: a character that is not printable (an
    escape code, a newline, a zero-width space), which would reach a prompt, a terminal or a shared file. A space
    is let through: ``lowdim.save_adapter(token="sks person")`` writes one, and such files loaded before (``--token``
    itself takes one word). None for a printable word, or for none recorded (''): the file then names no subject."""
    if word and not word.isprintable():
        return "holds a character that is not printable (an escape code or a line break)"
    return None


def check_recorded_token(adapter: AdapterFile) -> AdapterFile:
    """``adapter`` as read, once its recorded word passes ``recorded_word_problem``: every command that takes an
    adapter's token (generate's and merge's -a, train's --init) or writes it into a file to share (export) reads it
    through this, so an escape code or a newline an edited file holds never reaches a prompt, a terminal or a file."""
    token = adapter.metadata.get("token", "")
    if problem := recorded_word_problem(token):
        raise AdapterFileError(f"{adapter.path}: its token {printable_name(token, 60)} {problem}, which no lowdim run "
                               f"records (the file was edited or damaged)")
    return adapter


def token_problem(metadata: dict[str, str]) -> str:
    """What ``check_recorded_token`` refuses in a file's metadata, as ``lowdim show``'s problem row says it ("":
    nothing)."""
    token = metadata.get("token", "")
    problem = recorded_word_problem(token)
    return f"its token {printable_name(token, 60)} {problem}: every command that takes its token refuses it" if (
        problem) else ""
