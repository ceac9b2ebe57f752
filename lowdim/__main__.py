"""``python -m lowdim``: the ``lowdim`` command, for an environment that has the package but not its script
(a virtualenv that sees lowdim through --system-site-packages, say)."""

from lowdim_cli.main import script

script()
