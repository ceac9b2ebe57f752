"""Driving ``lowdim ui``'s page in-process as Gradio's front end does (a click's events, then those chained after
each), and another tab's run holding the studio's one job slot: shared by the ui tests of refused and failed clicks."""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Iterator

import pytest

gr = pytest.importorskip("gradio", reason="lowdim ui needs the ui extra (pip install 'lowdim[ui]')")


@contextlib.contextmanager
def another_tab_running(studio) -> Iterator[None]:
    """Another tab's run holding the studio's one job slot for the ``with`` block."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with studio.job("personalization", "another tab"):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        yield
    finally:
        release.set()
        holder.join(30)


def run_chain(page, fns: list, values: dict, errors: list[str]) -> None:
    """Each of ``fns`` on ``values`` (by block id, updated with what each shows), then each event chained after it
    (``.then`` always, ``.success`` on success, ``.failure`` on a ``gr.Error``, whose message goes to ``errors``), as
    Gradio's front end runs them."""
    for fn in fns:
        keywords = {"request": None} if "request" in inspect.signature(fn.fn).parameters else {}
        try:
            result = fn.fn(*(values[block._id] for block in fn.inputs), **keywords)
        except gr.Error as error:
            errors.append(error.message)
            failed = True
        else:
            _show(fn.outputs, result, values)
            failed = False
        run_chain(page, [then for then in page.fns.values() if then.trigger_after == fn._id
                         and not (then.trigger_only_on_success and failed)
                         and not (then.trigger_only_on_failure and not failed)], values, errors)


def _show(outputs: list, result: object, values: dict) -> None:
    """An event's values on its outputs; Gradio's update with no value leaves a control's value as it is."""
    if not outputs:
        return
    for block, value in zip(outputs, result if len(outputs) > 1 else [result], strict=True):
        if not (isinstance(value, dict) and value.get("__type__") == "update" and "value" not in value):
            values[block._id] = value["value"] if isinstance(value, dict) and "__type__" in value else value


def page_values(page) -> dict:
    """Each control's value as a page just loaded holds it, by block id (a ``gr.State``'s too), for ``run_chain``."""
    return {block._id: getattr(block, "value", None) for block in page.blocks.values()}


def fire(page, elem_id: str, trigger: str, values: dict, errors: list[str]) -> None:
    """The events ``trigger`` ("click", "change") on the control ``elem_id`` sets off, each with those chained after
    it, on ``values`` as ``run_chain`` runs them."""
    [control] = [block for block in page.blocks.values() if getattr(block, "elem_id", None) == elem_id]
    run_chain(page, [fn for fn in page.fns.values() if (control._id, trigger) in fn.targets], values, errors)


def studio_with_one_run(folder, tiny_sd):
    """A studio on ``folder/ui`` holding one finished run on the tiny pipeline (1 step, 1 preview step): (studio,
    its RunRecord), for tests that only read the run."""
    import torch
    from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

    from lowdim_sd.ui.studio import RunSettings, Studio, StudioConfig

    face = save_images(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1, folder,
                       "face")[0]
    studio = Studio(StudioConfig(model="tinyfaces", out=folder / "ui"))
    return studio, studio.personalize(face, RunSettings(model=str(tiny_sd), steps=1, crop=False, preview_steps=1))


class Tab:
    """One page, as a browser tab holds it, with a run opened: its values, and the errors its clicks showed."""

    def __init__(self, studio, run: str) -> None:
        from lowdim_sd.ui.page import build_page

        self.page = build_page(studio)
        self.values = page_values(self.page)
        self.errors: list[str] = []
        self.set({"draw-steps": 1, "draw-count": 1, "earlier": run})
        self.click("open")
        assert self.errors == [] and run in str(self.get("stages"))  # the opened run's stage table

    def block(self, elem_id: str | None):
        """The control ``elem_id``; "how" is How to draw, None the state of what Draw draws (neither has an id)."""
        [draw] = [fn for fn in self.page.fns.values() if fn.api_name == "draw_more"]
        if elem_id in ("how", None):
            return draw.inputs[4 if elem_id == "how" else 0]
        [found] = [block for block in self.page.blocks.values() if getattr(block, "elem_id", None) == elem_id]
        return found

    def set(self, values: dict) -> None:
        for elem_id, value in values.items():
            self.values[self.block(elem_id)._id] = value

    def get(self, elem_id: str | None) -> object:
        return self.values[self.block(elem_id)._id]

    def click(self, elem_id: str) -> None:
        fire(self.page, elem_id, "click", self.values, self.errors)
