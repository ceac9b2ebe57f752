"""``lowdim ui``: a local web page over the same code paths as the CLI.

``studio`` holds everything the page does as plain functions and one ``Studio`` object (tested
without a browser); ``page`` lays it out with Gradio, the ``ui`` extra, and only calls the studio.
"""
