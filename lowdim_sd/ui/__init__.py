"""``lowdim ui``: a local web page over the same code paths as the CLI.

``studio`` holds everything the page does as plain functions and one ``Studio`` object (tested without a
browser), helped by ``photos`` (the photo and its crop), ``run_folders`` (the runs kept in --out),
``drawing`` (Draw, and adapter files dropped on the page) and ``checks`` (what a user can type wrong);
``page``, ``page_draw`` and ``page_parts`` lay it out with Gradio, the ``ui`` extra, and only call the studio.
"""
