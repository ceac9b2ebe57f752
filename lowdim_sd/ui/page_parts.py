"""What every control and handler of the page shares: errors as one line, sliders checked by the studio, and
the bridge from the studio's progress listener to Gradio's bar."""

from __future__ import annotations

import functools
import html
import inspect
import re
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import gradio as gr

from lowdim.errors import LowdimError, first_line
from lowdim_sd.ui.checks import in_page_terms, whole_number
from lowdim_sd.ui.studio import SCORING_BAR, Busy, Stopped

if TYPE_CHECKING:
    from pydantic import BaseModel

Model = TypeVar("Model", bound="BaseModel")
Kept = TypeVar("Kept")


def Slider(*args: Any, **kwargs: Any) -> gr.Slider:  # noqa: N802 - stands for gr.Slider in the layout
    """Gradio's slider, whose value reaches the studio's check as it is: Gradio's own range check prints a
    traceback on the server's terminal and names no control."""
    return as_sent(gr.Slider(*args, **kwargs))


def Number(*args: Any, **kwargs: Any) -> gr.Number:  # noqa: N802 - stands for gr.Number in the layout
    """Gradio's number field, whose value reaches the studio's check as it is: Gradio's own rounding prints a
    traceback for a client's "abc" and names no control, and rounds 2.5 to 2 where the studio refuses it."""
    return as_sent(gr.Number(*args, **kwargs))


def File(name: str, **kwargs: Any) -> gr.File:  # noqa: N802 - stands for gr.File in the layout
    """Gradio's file control, whose value Gradio checks itself before any handler runs (its data model): a
    value that is no uploaded file (only a client other than the page sends one) is refused in one line naming
    the control ``name``, not in pydantic's three lines with a traceback on the server's terminal."""
    component = gr.File(**kwargs)
    if component.data_model is not None:  # FileData or ListFiles: a File always has one
        component.data_model = _named_files(component.data_model, name)
    return component


def _named_files(model: type[Model], name: str) -> type[Model]:
    """``model`` (Gradio's FileData, or ListFiles for a list of files) under its own name, so its schema, which
    clients read, is Gradio's own; its refusal is a ``gr.Error``, which Gradio passes on without a traceback
    (pydantic wraps only a validator's ValueError, so this is raised around the validation, not in it)."""
    from pydantic import ValidationError

    many = model.model_fields.get("root") is not None  # ListFiles is a root model: a list

    def model_validate(cls, value: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return super(named, cls).model_validate(value, *args, **kwargs)  # the model's own, for cls
        except ValidationError:
            raise gr.Error(_not_uploaded(name, many, value), print_exception=False) from None

    namespace = {"__module__": model.__module__, "__doc__": model.__doc__,
                 "model_validate": classmethod(model_validate)}
    metaclass: Callable[..., type] = type(model)  # pydantic's, which builds the subclass as Gradio's are built
    named = cast("type[Model]", metaclass(model.__name__, (model,), namespace))  # a class made at run time
    return named


def _not_uploaded(name: str, many: bool, value: Any) -> str:
    if many:
        got = "one file" if isinstance(value, dict) else _shortened(value)
        return f"{name} must be a list of files uploaded to this page, got {got}"
    return f"{name} must be a file uploaded to this page (gradio_client: handle_file(PATH)), got {_shortened(value)}"


def _shortened(value: Any) -> str:
    said = repr(value)
    return said if len(said) <= 80 else said[:77] + "..."


def counted_inputs(page: gr.Blocks) -> None:
    """Too few values for an event (only a client other than the page sends that) refused in one line naming
    what is missing, instead of Gradio's lines listing its components' reprs, with a traceback on the terminal.
    Set on the instance, around Gradio's own check, which still does the rest (a Gradio without that check:
    left as it is)."""
    gradios = getattr(page, "validate_inputs", None)
    if gradios is None:
        return

    def validate_inputs(block_fn: Any, inputs: list[Any]) -> None:
        wanted = [_control_name(block) for block in block_fn.inputs]
        if len(inputs) < len(wanted):
            missing = wanted[len(inputs):]
            raise gr.Error(f"{block_fn.name} takes {len(wanted)} values ({', '.join(wanted)}), got {len(inputs)}: "
                           f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing",
                           print_exception=False)
        gradios(block_fn, inputs)

    page.validate_inputs = validate_inputs  # type: ignore[method-assign]  # gradio's method, on this page only


def _control_name(block: Any) -> str:
    """A control as the page labels it, without the label's note in brackets ("Face photo (JPEG, ...)")."""
    return str(getattr(block, "label", None) or block.get_block_name()).split(" (")[0]


def as_sent(component: Any) -> Any:
    """``component`` with Gradio's own preprocessing off. (Set on the instance: a subclass of a Gradio component
    makes Gradio write a .pyi file beside this one.)"""
    component.preprocess = lambda payload: payload
    return component


def on_page(fn: Callable) -> Callable:
    """Run ``fn``; a lowdim error becomes the page's one-line message, anything else too (and a traceback
    on the terminal, where the person who runs the server can report it)."""
    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as error:
            if not isinstance(error, LowdimError):
                traceback.print_exc()
            raise gr.Error(error_line(error), print_exception=False) from None
    return wrapped


def error_line(error: Exception) -> str:
    """The page's one line for ``error`` (``on_page``): a lowdim error's first line, anything else as unexpected."""
    if isinstance(error, gr.Error):
        return str(error.message)
    if isinstance(error, LowdimError):
        return page_line(first_line(error))
    return f"unexpected error: {page_line(first_line(error))} (details in the terminal)"


REFUSED, STOPPED = "refused", "stopped"  # how a job ended, for an event's ``ended`` state (``job_on_page``)
# A second Personalize while the tab's own runs (the studio's own Busy line would need its job's start, kept private)
OWN_JOB_RUNNING = ("a personalization is already running in this tab; one job runs at a time: wait for it to "
                   "finish, or press Stop")


def job_on_page(outputs: list[gr.components.Component], status: gr.components.Component,
                ended: gr.State | None = None) -> Callable[[Callable], Callable]:
    """``on_page`` for a button that starts a job, whose event fills ``outputs``: a refusal (another job runs) or
    a stop is no mistake of the request, and its line goes in ``status``, where the page shows a job's status, the
    other outputs left as they are. Raised as a ``gr.Error``, it would be a toast that fades, and Gradio would put
    a red "Error" badge on every output, hiding them (Earlier runs, Draw's prompt) with no reason beside them.
    ``status`` may be HTML (the stages box), where the line is escaped, or markdown (Evaluate's table).
    ``ended``, a state among ``outputs``, becomes REFUSED or STOPPED, for a follow-up that reads how the job ended
    (a refused and a stopped job both leave Gradio's ``.success`` to run); the job sets it when it is done."""
    place = next(index for index, output in enumerate(outputs) if output is status)
    how = next((index for index, output in enumerate(outputs) if output is ended), None)

    def decorate(fn: Callable) -> Callable:
        @on_page
        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except (Busy, Stopped) as error:
                line = page_line(first_line(error))
                toast(line)
                values: list[dict[str, Any] | str] = [gr.update()] * len(outputs)
                values[place] = html_text(line) if isinstance(status, gr.HTML) else line  # the stages box
                if how is not None:
                    values[how] = STOPPED if isinstance(error, Stopped) else REFUSED
                return values[0] if len(values) == 1 else tuple(values)
        return wrapped
    return decorate


KEPT_SESSIONS = 256  # BySession's bound: lines never taken would otherwise stay for the server's life


class BySession(Generic[Kept]):
    """What a page session's (a tab's) failed event leaves for its ``.failure`` follow-up, to which Gradio gives no
    error: the failure's line, which the follow-up writes where it stays once the toast fades (Personalize's job
    line, Draw's own line, Evaluate's table). By session, so another tab's failure is never written on mine; taken
    by the follow-up, so a later one finds none of it."""

    def __init__(self) -> None:
        self._kept: dict[str, Kept] = {}

    def keep(self, owner: str, value: Kept) -> None:
        self._kept.pop(owner, None)  # re-added last: the oldest first in line to go
        self._kept[owner] = value
        while len(self._kept) > KEPT_SESSIONS:  # an API client or a tab closed before its follow-up takes none
            del self._kept[next(iter(self._kept))]

    def take(self, request: gr.Request | None) -> Kept | None:
        """What the session of ``request`` kept, if anything, now no longer kept."""
        return self._kept.pop(session(request), None)

    def keeping(self: BySession[str], fn: Callable) -> Callable:
        """``fn`` (an ``on_page`` handler that takes the ``request``), the line of its failure kept for its
        session."""
        asked = inspect.signature(fn)

        @functools.wraps(fn)  # its name and signature: the page's API name, and Gradio passes it the request
        def kept(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except gr.Error as error:
                request = asked.bind_partial(*args, **kwargs).arguments.get("request")
                self.keep(session(request), str(error.message))
                raise
        return kept


class OpensMeanwhile:
    """Whether a page session opened an earlier run while its own job ran: the job, done, then leaves the opened
    run on screen and says its own is done, rather than putting its run over the one the user opened. Each job
    watches for itself, so a second click refused while the first runs takes nothing from the first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watching: dict[str, list[threading.Event]] = {}  # by session: one flag per job of it in flight

    @contextmanager
    def watch(self, owner: str) -> Iterator[threading.Event]:
        """A flag set when ``owner`` opens a run during the ``with`` block (``opened``)."""
        flag = threading.Event()
        with self._lock:
            self._watching.setdefault(owner, []).append(flag)
        try:
            yield flag
        finally:
            with self._lock:
                flags = [other for other in self._watching.pop(owner, []) if other is not flag]
                if flags:
                    self._watching[owner] = flags

    def running(self, owner: str) -> bool:
        """Whether a job of ``owner`` is in flight (inside ``watch``)."""
        with self._lock:
            return bool(self._watching.get(owner))

    def opened(self, owner: str) -> None:
        """``owner`` opened a run now: each of its jobs in flight leaves that run on screen."""
        with self._lock:
            for flag in self._watching.get(owner, []):
                flag.set()


def toast(line: str) -> None:
    """``line`` as a toast too, where the eye is when a button is pressed (a yellow one: no "Error" badges); only
    in a Gradio event, outside which ``gr.Warning`` is a Python warning."""
    try:
        from gradio.context import LocalContext  # Gradio's internals: another Gradio only loses the toast

        in_event = LocalContext.event_id.get(None) is not None
    except (ImportError, AttributeError):
        return
    if in_event:
        gr.Warning(line)


def page_line(message: str) -> str:
    """A message as the page says it: an upload named by its own name, not by Gradio's temporary folder
    (``/tmp/gradio/4555be98.../notes.txt``), and advice in the page's terms instead of the CLI's flags."""
    return in_page_terms(upload_folders().sub("", message))


def html_text(text: str) -> str:
    """``text`` as it is, on one line, in the stages box (HTML): a run.json may come from someone else, and its
    words must show as written, never as a tag, a link (a bare URL or e-mail: what markdown would make one) or
    another row of the stage table; an entity such as ``&amp;`` shows as those five characters."""
    return html.escape(" ".join(text.splitlines()), quote=False)


def code_span(text: str) -> str:
    """``text`` in a markdown code span that its own backticks (a run folder's name may hold one) cannot end."""
    text = " ".join(text.splitlines())
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    padded = f" {text} " if text.startswith("`") or text.endswith("`") or fence != "`" else text
    return f"{fence}{padded}{fence}"


def upload_folders() -> re.Pattern:
    """Gradio's folder of uploads, each in a folder of its own hash, as it may be written (as set, resolved). Read
    at each call: each server sets its own (upload_folder.py)."""
    from gradio.utils import get_upload_folder

    folder = get_upload_folder()
    spellings = sorted({folder, str(Path(folder).resolve())}, key=len, reverse=True)
    return re.compile("(?:" + "|".join(map(re.escape, spellings)) + r")/[^/\s]+/")


EXACT_FLOATS = 2 ** 53  # every whole number up to it is a float exactly; past it a float skips some


def whole(value: object, label: str) -> int:
    """A number control's value as an int (``checks.whole_number``): what the page's fields send (2, or 2.0),
    never rounded; an emptied field (None), a fraction or a client's text is one line naming ``label``. A float
    past 2**53 is refused without quoting it: the browser's number field has rounded what was typed
    (99999999999999999999 arrives as 1e20), and a line quoting 100000000000000000000 would not be the user's number
    (review CR7c). A client's exact int is left to the control's own range check, which quotes it as sent."""
    if isinstance(value, float) and abs(value) > EXACT_FLOATS:
        raise LowdimError(f"{label} is too large for the page to read exactly (a browser rounds whole numbers past "
                          f"{EXACT_FLOATS}): type a smaller one")
    return whole_number(value, label)


def text(value: str | None) -> str:
    """A text box's value: null, which only a client other than the page sends, is the empty box."""
    return "" if value is None else value


def session(request: gr.Request | None) -> str:
    """The page session (a browser tab, a gradio_client Client) a request came from: the owner of the job it
    starts, whom Stop and a closed tab may stop. "" for a call made without Gradio (tests, Python)."""
    return getattr(request, "session_hash", None) or ""


def progress_listener(progress: gr.Progress) -> Callable[[str, int, int], None]:
    """The studio's listener as Gradio's bar: a stage's name, then its steps (``stage: label 13/2000 steps``), each
    bar in what it counts: pictures for generate's ("6/6 steps" would read as denoising steps), scores for
    Evaluate's (each metric on each picture), steps for the others. The count is in the words, the bar given only
    its fraction: Gradio's page writes a (done, total) count over 1000 short, '13/2k steps'. A request its client
    cancelled (gradio_client's ``job.cancel()``) stops at the next step: Gradio leaves its thread running."""
    from lowdim_sd.generate import PICTURES_BAR

    units = {PICTURES_BAR: "pictures", SCORING_BAR: "scores"}
    stage = {"name": "starting"}
    cancelled = cancel_watch()

    def hear(label: str, done: int, total: int) -> None:
        if cancelled():
            raise KeyboardInterrupt("cancelled by its client")
        if done == 0:
            stage["name"] = label
            progress(0, desc=label)
        else:
            name = f"{stage['name']}: {label}" if label != stage["name"] else label
            progress(done / total if total > 0 else 0.0, desc=f"{name} {done}/{total} {units.get(label, 'steps')}")
    return hear


def cancel_watch() -> Callable[[], bool]:
    """Whether the Gradio event running this handler has left Gradio's active jobs (cancelled by its client),
    read from Gradio's queue as its own ``set_progress`` reads it. Private ground: the event must first be
    seen there, so a Gradio that keeps its jobs elsewhere only makes this always False, never a false stop."""
    from gradio.context import LocalContext

    blocks, event_id, seen = LocalContext.blocks.get(None), LocalContext.event_id.get(None), [False]

    def cancelled() -> bool:
        if blocks is None:  # no Gradio event here: never cancelled
            return False
        try:
            active = any(event._id == event_id for events in blocks._queue.active_jobs if events for event in events)
        except Exception:  # noqa: BLE001 - another Gradio's queue: no way to tell, so never cancelled
            return False
        seen[0] = seen[0] or active
        return seen[0] and not active

    cancelled()  # seen now, as the handler starts: a cancel during the model's load is then not missed
    return cancelled
