"""Test settings shared by the whole suite."""

import os

from hypothesis import settings

# CI explores the same examples on every run, so a red build is reproducible; locally, examples vary.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
