"""``lowdim eval``: score a folder of generated images with registered metrics (the paper's four by default).

- ``folder``: the eval folder and loading of its images and references.
- ``prompts_file``: the eval folder's prompts.json / prompts.csv read into entries, and ``EvalFolderError``.
- ``image_files``: opening one image (generated or reference), and the notes on images left out or shrunk.
- ``paper_metrics``: Face Rec, DINO, CLIP-I and CLIP-T as ``lowdim.metrics.Metric`` factories.
- ``report``: running metrics over samples, the table, eval.json and eval.md.
- ``job``: the whole command as one plain function, ``run_eval(EvalJob(...))``.
"""
