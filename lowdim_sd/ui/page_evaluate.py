"""The page's Evaluate tab: eval's scores of dropped pictures against a reference photo, as ``lowdim eval`` gives
them (``Studio.evaluate``), in one table."""

from __future__ import annotations

import gradio as gr

from lowdim.errors import LowdimError
from lowdim_sd.markdown_cells import markdown_cell
from lowdim_sd.ui.page_parts import BySession, File, job_on_page, page_line, progress_listener, session, text
from lowdim_sd.ui.studio import Studio


def evaluate_tab(studio: Studio) -> None:
    from lowdim.registry import get_registry
    from lowdim_sd.ui.scoring import metrics_for

    gr.Markdown("Score generated pictures against a reference photo, as `lowdim eval` does (docs/eval.md).")
    with gr.Row():
        generated = File("Generated pictures", label="Generated pictures", file_count="multiple", type="filepath",
                         elem_id="generated")
        reference = File("Reference photo", label="Reference photo", type="filepath", elem_id="reference")
    with gr.Row():
        prompt = gr.Textbox("a photo of a [V] face", label="Their prompt (for CLIP-T)")
        token = gr.Textbox("sks", label="Identifier that [V] stood for")
        metrics = gr.Textbox(",".join(metrics_for(studio.config.model)), label="Metrics (comma list)",
                             info=f"installed: {', '.join(sorted(get_registry().metrics))}", elem_id="metrics")
    score = gr.Button("Score", variant="primary", elem_id="score")
    table = gr.Markdown(elem_id="eval-table")
    failures: BySession[str] = BySession()  # a failed Score's line, for the follow-up that puts it in the table

    @failures.keeping
    @job_on_page([table], table)
    def run(files: list[str] | None, photo: str | None, prompt_text: str | None, identifier: str | None,
            names: str | None, request: gr.Request | None = None, progress: gr.Progress = gr.Progress()) -> str:
        if not photo:
            raise LowdimError("drop the reference photo of the subject")
        report = studio.evaluate(list(files or []), photo, text(prompt_text), text(identifier), text(names),
                                 progress_listener(progress), owner=session(request))
        return page_line(report)  # its notes name the Reference photo by its own name, not Gradio's folder

    def failed(request: gr.Request | None = None) -> str:
        """A failed Score's line in the table, where it stays once its toast fades, and no earlier scores under it,
        as if they were its own: cleared even where no line was kept (a refusal of Gradio's own, before ``run``)."""
        line = failures.take(request)
        return f"nothing was scored: {markdown_cell(line)}" if line else ""  # markdown: its quotes shown as typed

    score.click(run, [generated, reference, prompt, token, metrics], [table], concurrency_limit=None,
                trigger_mode="multiple").failure(failed, None, [table], api_visibility="private")
