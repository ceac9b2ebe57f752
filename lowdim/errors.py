"""User-facing errors: one clear line each, turned into a non-zero exit by the CLI."""


class LowdimError(Exception):
    """A mistake in the user's input (a name, a value, a file). Its message is one line, shown as is."""


class ConfigError(LowdimError):
    """An invalid space or adapter configuration value."""


class AdapterFileError(LowdimError):
    """An adapter file that cannot be read, or that does not fit its target model."""


class PluginError(LowdimError):
    """A plugin that registers a name someone else already owns."""


def first_line(error: BaseException) -> str:
    """The first line of a library's error message (or its type's name): enough to say what went wrong."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
