"""``python -m lowdim``: the ``lowdim`` command, for an environment that has the package but not its script
(a virtualenv that sees lowdim through --system-site-packages, say). Through the console script's own entry, so
a Ctrl-C or SIGTERM while the commands import is its one line and status 130 here too."""

from lowdim_cli.entry import script

script()
