"""The ``lowdim`` command line (Typer). Commands are thin: logic lives in importable functions."""
