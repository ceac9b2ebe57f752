"""Discovery of plugins: lowdim's built-ins, then every entry point in the ``lowdim`` group.

A plugin that fails to import, or whose hook raises, costs a warning naming it; everything
else keeps working. Tests bypass discovery by building a PluginManager from explicit modules.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from lowdim import hookspecs
from lowdim._lazy import lazy_exports as lazy_exports  # public here: a plugin's entry module defers its torch
from lowdim.errors import PluginError
from lowdim.plugin_calling import calling_plugin, plugin_label, renamed_plugin
from lowdim.plugin_calling import split_renamed as split_renamed  # re-exported: lowdim.testing.plugin_load_checks

ENTRY_POINT_GROUP = "lowdim"
BUILTIN_MODULES = ("lowdim.spaces.builtin", "lowdim.hyper.builtin")
# Names shown as "plugin" in `lowdim spaces`; pluggy needs them distinct.
BUILTIN_NAMES = {"lowdim.spaces.builtin": "builtin", "lowdim.hyper.builtin": "builtin-heads"}
# What a plugin module of lowdim's own that loads as an entry point declares (``LOWDIM_FIRST_PARTY = __name__``): its
# names are lowdim's own as much as the built-in spaces' are, though LOWDIM_NO_PLUGINS leaves it out. Its own name,
# not True: a module that star-imports a first-party plugin's names copies the value, which then names another.
FIRST_PARTY = "LOWDIM_FIRST_PARTY"
# Values of LOWDIM_NO_PLUGINS that leave plugins on: `LOWDIM_NO_PLUGINS=0` reads as "no, don't disable them".
OFF_VALUES = ("", "0", "false", "no")


class PluginWarning(UserWarning):
    """A plugin could not be loaded or raised inside a hook; lowdim went on without it."""


class OwnNamesPluginManager(pluggy.PluginManager):
    """pluggy's manager, looking for a module's hooks among the names it defines (``vars``), as ``_names_held``
    does: pluggy's register reads every name ``dir()`` gives, and a lazy entry module's ``__dir__``
    (``lazy_exports``) names classes that reading would import, torch with them, at every start of lowdim."""

    def parse_hookimpl_opts(self, plugin: object, name: str) -> pluggy.HookimplOpts | None:
        if isinstance(plugin, ModuleType) and name not in vars(plugin):
            if getattr(self.hook, name, None) is not None:  # a hook's name offered lazily: said, not resolved
                warnings.warn(f"plugin {plugin.__name__}: its hook {name} is offered lazily (its __getattr__), and "
                              f"lowdim registers the hooks a plugin module defines or imports; import it there",
                              PluginWarning, stacklevel=2)
            return None  # a lazy name: resolving it is the import the module deferred
        return super().parse_hookimpl_opts(plugin, name)


def new_plugin_manager() -> pluggy.PluginManager:
    manager = OwnNamesPluginManager("lowdim")
    manager.add_hookspecs(hookspecs)
    return manager


def build_plugin_manager(
    modules: Iterable[str | ModuleType] = BUILTIN_MODULES, load_entry_points: bool | None = None
) -> pluggy.PluginManager:
    """Built-ins plus (unless disabled, e.g. by LOWDIM_NO_PLUGINS=1) installed entry points."""
    manager = new_plugin_manager()
    for module in modules:
        plugin = importlib.import_module(module) if isinstance(module, str) else module
        manager.register(plugin, name=BUILTIN_NAMES.get(module) if isinstance(module, str) else None)
    if load_entry_points is None:
        load_entry_points = not plugins_disabled()
    if load_entry_points:
        _load_entry_points(manager)
    return manager


def plugins_disabled() -> bool:
    """Whether LOWDIM_NO_PLUGINS asks for lowdim's built-in modules alone (any value but 0, false, no or empty)."""
    return os.environ.get("LOWDIM_NO_PLUGINS", "").strip().lower() not in OFF_VALUES


# What a line about one missing plugin, metric or command adds when plugins are switched off.
PLUGINS_OFF = "LOWDIM_NO_PLUGINS is set, so no plugin is loaded; unset it, or set it to 0"
NO_PLUGINS_NOTE = ("LOWDIM_NO_PLUGINS is set, so no plugin is loaded and no model is registered, not even lowdim's "
                   "own sd15; unset it, or set it to 0, to use them")
SPACES_NO_PLUGINS_NOTE = ("LOWDIM_NO_PLUGINS is set, so no plugin is loaded and only lowdim's own spaces are "
                          "listed; unset it, or set it to 0, to use a plugin's")


def no_plugins_space_note(name: str, package: str | None = None) -> str:
    """Why space ``name`` (a file's, or a command's) is missing when plugins are off: a plugin may provide it."""
    provider = f" (package {package} provides it)" if package else ""
    return (f"space '{name}' is not one of lowdim's own{provider}, and LOWDIM_NO_PLUGINS is set, so no plugin is "
            f"loaded; unset it, or set it to 0, to use it")


def is_lowdims_own(manager: pluggy.PluginManager | None, plugin_name: str) -> bool:
    """Whether the plugin registered as ``plugin_name`` is one of lowdim's own modules. Told by its module, not
    its name: a third-party entry point may be called `sd` too (it is then registered under another name)."""
    if plugin_name in BUILTIN_NAMES.values():
        return True
    plugin = manager.get_plugin(plugin_name) if manager is not None else None
    module = getattr(plugin, "__name__", None)
    return module in BUILTIN_MODULES or (isinstance(module, str) and getattr(plugin, FIRST_PARTY, None) == module)


_installed: pluggy.PluginManager | None = None


def installed_plugins() -> pluggy.PluginManager:
    """The built-ins and installed entry points, loaded once per process: the process-wide registry is built
    from them, and the CLI adds their commands without building that registry (plugin modules import
    torch only inside their hooks, so `lowdim --help` stays fast)."""
    global _installed
    if _installed is None:
        _installed = build_plugin_manager()
    return _installed


# Distribution name -> why its entry point failed to load: `lowdim --version` (what a bug report quotes) marks it.
_failed_to_load: dict[str, str] = {}


def failed_to_load() -> dict[str, str]:
    """The installed plugins' packages whose entry point failed to load, with the error, by distribution name."""
    installed_plugins()
    return dict(_failed_to_load)


def _load_entry_points(manager: pluggy.PluginManager) -> None:
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        name = entry_point.name
        dist = getattr(getattr(entry_point, "dist", None), "name", None)
        try:
            plugin = entry_point.load()
            if manager.is_registered(plugin):
                continue  # one package listed twice (an editable install beside a built one)
            if signature := hook_signature_problem(manager, plugin):  # pluggy's own refusal is three lines
                where, wrong = signature
                _failed_to_load[dist or entry_point.value] = wrong
                label = _package_label(entry_point, dist) + (f" ({where})" if where else "")
                warnings.warn(f"{label}: {wrong}", PluginWarning, stacklevel=2)
                continue
            if manager.get_plugin(name) is not None:  # another package's plugin of that name: loaded too, so
                name = renamed_plugin(name, dist or entry_point.value)  # a clash then names both packages
            manager.register(plugin, name=name)
        except Exception as error:  # a broken third-party plugin must not break lowdim
            _failed_to_load[dist or entry_point.value] = f"{type(error).__name__}: {_one_line(error)}"
            warning = PluginWarning(_load_failure(entry_point, dist, error))
            warning.__cause__ = error  # its traceback, for -W error and whoever catches the warning
            warnings.warn(warning, stacklevel=2)
            continue
        problem = hook_problem(manager, plugin)
        if problem:
            package = f", package {dist}" if dist else ""  # what a user uninstalls: the module is not its name
            warnings.warn(f"plugin '{entry_point.name}' ({entry_point.value}{package}) {problem}", PluginWarning,
                          stacklevel=2)


def _package_label(entry_point: Any, dist: str | None) -> str:
    """Who a load message is about: the package (what a user fixes or uninstalls), else the entry point."""
    return f"plugin package {dist}" if dist else f"plugin '{entry_point.name}'"


def _one_line(error: BaseException) -> str:
    """An error's text on one line: a warning and `lowdim --version`'s plugins line stay whole."""
    return "; ".join(line.strip() for line in str(error).splitlines() if line.strip())


def _load_failure(entry_point: Any, dist: str | None, error: Exception) -> str:
    """The warning for an entry point that could not be loaded. A module the entry point names that is not
    there at all is the package's install (or its [project.entry-points.lowdim]) at fault, not its code."""
    module = entry_point.value.partition(":")[0].strip()
    missing = getattr(error, "name", None) if isinstance(error, ModuleNotFoundError) else None
    if missing and (module == missing or module.startswith(f"{missing}.")):
        fix = dist or "the package that provides it"
        return (f"{_package_label(entry_point, dist)}: its entry point names module '{module}', which is not "
                f"installed (reinstall or uninstall {fix})")
    where = raised_in(module, error)
    return (f"plugin '{entry_point.name}' ({entry_point.value}) failed to load and was skipped: "
            f"{type(error).__name__}: {_one_line(error)}" + (f" (at {where})" if where else ""))


def hook_signature_problem(manager: pluggy.PluginManager, plugin: object) -> tuple[str | None, str] | None:
    """("package/module.py:LINE" or None, what is wrong) for a hook whose parameters are not its hookspec's.
    lowdim calls each hook with its arguments by name (``register=...``), so ``register_spaces(reg)`` could never
    be called: pluggy refuses it in three lines of its own, and one that takes no parameter fails on every call."""
    specs = {name for name in dir(hookspecs) if name.startswith("register_")}
    for attribute in _names_held(plugin):
        opts = manager.parse_hookimpl_opts(plugin, attribute)
        if opts is None:
            continue
        hook = opts.get("specname") or attribute  # @hookimpl(specname=...) implements another name's spec
        function = getattr(plugin, attribute, None)
        if hook not in specs or not callable(function):
            continue  # not a hook of lowdim's (a misspelt one is warned about after registering)
        wanted = list(getattr(manager.hook, hook).spec.argnames)
        try:
            parameters = inspect.signature(function).parameters.values()
        except (TypeError, ValueError):  # no signature to read (a builtin): pluggy and the call judge it
            continue
        if _takes_by_name(parameters, wanted):
            continue
        shown = ", ".join(f"`{w}`" for w in wanted)
        one = f"one parameter named {shown}" if len(wanted) == 1 else f"the parameters {shown}"
        named = hook if attribute == hook else f"{attribute} (specname {hook})"
        return (_defined_at(function), f"hook {named}({', '.join(p.name for p in parameters)}) must take {one} "
                                      f"(lowdim passes {'it' if len(wanted) == 1 else 'them'} by name)")
    return None


def _names_held(plugin: object) -> list[str]:
    """The names a hook may be under: a module's own (its ``__dict__``), not every name its ``dir()`` gives, since a
    lazy entry module's ``__dir__`` may name classes its ``__getattr__`` would import, torch with them (register
    looks among the same names: ``OwnNamesPluginManager``)."""
    return sorted(vars(plugin)) if isinstance(plugin, ModuleType) else sorted(dir(plugin))


def _takes_by_name(parameters: Iterable[inspect.Parameter], wanted: list[str]) -> bool:
    """Whether a function of ``parameters`` can be called as ``function(**{name: ... for name in wanted})``: each
    name a parameter (or **kwargs takes it), and no other parameter without a default."""
    listed = list(parameters)
    by_name = {p.name for p in listed if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    any_name = any(p.kind is p.VAR_KEYWORD for p in listed)
    required = {p.name for p in listed if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    return (any_name or set(wanted) <= by_name) and required <= set(wanted)


def _defined_at(function: Callable[..., Any]) -> str | None:
    """"package/module.py:LINE" of a function's `def` line (not its decorator's), as ``raised_in`` shows places;
    None for a callable without code of its own."""
    code = getattr(function, "__code__", None)
    if code is None:
        return None
    try:
        lines, first = inspect.getsourcelines(function)
        line = first + next(i for i, text in enumerate(lines) if text.lstrip().startswith(("def ", "async def ")))
    except (OSError, TypeError, StopIteration):
        line = code.co_firstlineno
    path = Path(code.co_filename)
    own = _package_files(getattr(function, "__module__", "").partition(".")[0])
    base = own[0].parent if own else path.parent
    return f"{path.relative_to(base).as_posix() if base in path.parents else path.name}:{line}"


def hook_problem(manager: pluggy.PluginManager, plugin: object) -> str | None:
    """What keeps a loaded plugin from being called, which pluggy passes over in silence: a hook name that
    lowdim has no hook of (a typo), or no hook at all (a function without @hookimpl)."""
    hooks = sorted(name for name in dir(hookspecs) if name.startswith("register_"))
    callers = manager.get_hookcallers(plugin) or []
    unknown = sorted(caller.name for caller in callers if caller.spec is None)
    if unknown:
        guess = difflib.get_close_matches(unknown[0], hooks, n=1)
        hint = f" (did you mean {guess[0]}?)" if guess else f"; lowdim's hooks: {', '.join(hooks)}"
        return f"implements {', '.join(unknown)}, which is no lowdim hook{hint}, so it is never called"
    if callers:
        return None
    held = _names_held(plugin)  # a lazy module's other names, read, would import what it defers
    unmarked = [name for name in hooks if name in held and callable(getattr(plugin, name, None))]
    if unmarked:
        return f"defines {unmarked[0]} without @hookimpl (from lowdim.hookspecs), so it is never called"
    if set(hooks) & set(dir(plugin)):
        return None  # a hook offered lazily: its registration said so (OwnNamesPluginManager)
    return f"implements no lowdim hook ({', '.join(hooks)}), so it adds nothing"


def call_each(
    manager: pluggy.PluginManager, hook_name: str, make_kwargs: Callable[[str], dict[str, Any]],
    on_success: Callable[[str], None] | None = None, on_failure: Callable[[str], None] | None = None,
) -> None:
    """Call one hook on every plugin separately, so one raising plugin cannot hide the others.

    ``make_kwargs(plugin_name)`` builds each call's arguments, so callbacks know who calls them;
    ``on_success(plugin_name)`` runs after a call that did not raise (a skipped plugin then adds nothing), and
    ``on_failure(plugin_name)`` after one that raised and is skipped (to take back what it did to a shared object).
    A PluginError (two plugins claiming one name) is the user's to fix and is not swallowed, and neither is
    an error in lowdim's own built-in hooks: that is a bug in lowdim, which a warning would hide.
    """
    for impl in getattr(manager.hook, hook_name).get_hookimpls():
        try:
            with calling_plugin(impl.plugin_name):  # its warnings name it (lowdim.plugin_calling)
                returned = impl.function(**make_kwargs(impl.plugin_name))
            if _returned_something(returned):
                warnings.warn(_returned_warning(impl.plugin_name, hook_name, returned), PluginWarning, stacklevel=2)
            if on_success is not None:
                on_success(impl.plugin_name)
        except PluginError:
            raise
        except Exception as error:
            if impl.plugin_name in BUILTIN_NAMES.values():
                raise
            if on_failure is not None:
                on_failure(impl.plugin_name)
            warnings.warn(hook_error_warning(impl, hook_name, error), stacklevel=2)


def _returned_something(returned: object) -> bool:
    """Whether a hook returned what it meant to register: not None, nor register()'s own Nones (a comprehension)."""
    return returned is not None and not (isinstance(returned, (list, tuple)) and all(x is None for x in returned))


def _returned_warning(plugin_name: str, hook_name: str, returned: object) -> str:
    """A hook that returns what it should register (as many plugin systems collect) registers nothing: said."""
    shown = repr(returned) if len(repr(returned)) <= 80 else repr(returned)[:77] + "..."
    fix = "add each command with @cli.command()" if hook_name == "register_commands" else \
        "call register(...) for each"
    return f"{plugin_label(plugin_name)}: {hook_name} returned {shown}; {fix} instead (the return value is ignored)"


def hook_error_warning(impl: pluggy.HookImpl, hook_name: str, error: Exception) -> PluginWarning:
    """The warning for a plugin hook that raised: the plugin and its package (what to uninstall), the error, and
    where in the plugin's own code it came from (its author's bug is there, not in lowdim's frames). The error is
    its cause, so ``-W error`` (and whoever catches the warning) still has its traceback."""
    where = raised_at(impl.function, error)
    warning = PluginWarning(f"{plugin_label(impl.plugin_name)} raised in {hook_name} and was skipped: "
                            f"{type(error).__name__}: {error}" + (f" (at {where})" if where else ""))
    warning.__cause__ = error
    return warning


def raised_at(hook: Callable[..., Any], error: BaseException) -> str | None:
    """"package/module.py:LINE" of the last traceback frame inside the plugin's own files: the top-level package the
    hook function belongs to (or the hook's own file, for a plugin of one module). A frame deeper down, in lowdim
    (a refused registration) or torch, is a consequence of that line. None when no frame is the plugin's."""
    code = getattr(hook, "__code__", None)
    return raised_in(getattr(hook, "__module__", None) or "", error,
                     [Path(code.co_filename)] if code is not None else [])


def raised_in(module: str, error: BaseException, fallback: list[Path] | None = None) -> str | None:
    """``raised_at`` for the plugin whose code is the top-level package of ``module``, found without importing it
    (a plugin that failed to import is not in ``sys.modules``); ``fallback``: its files where none is found."""
    own = _package_files(module.partition(".")[0]) or fallback or []
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if _inside(frame.filename, own)]
    if not frames:
        return None
    frame, base = frames[-1], own[0].parent
    path = Path(frame.filename)
    shown = path.relative_to(base).as_posix() if base in path.parents else path.name
    return f"{shown}:{frame.lineno}"


def plugin_that_raised(manager: pluggy.PluginManager, error: BaseException) -> tuple[str, str] | None:
    """(plugin name, "package/module.py:LINE") of the innermost traceback frame of ``error`` in a loaded plugin's
    own files, lowdim's own modules left out: whose code raised it (or called what did); None where none did."""
    frames = traceback.extract_tb(error.__traceback__)
    innermost: tuple[int, str, str] | None = None
    for name, plugin in manager.list_name_plugin():
        module = getattr(plugin, "__name__", None)
        if not isinstance(module, str) or is_lowdims_own(manager, name):
            continue
        own = _package_files(module.partition(".")[0])
        last = max((i for i, frame in enumerate(frames) if _inside(frame.filename, own)), default=-1)
        if last >= 0 and (innermost is None or last > innermost[0]):
            innermost = (last, name, module)
    return (innermost[1], raised_in(innermost[2], error) or "") if innermost else None


def _inside(filename: str, own: list[Path]) -> bool:
    path = Path(filename)
    return any(path == place or place in path.parents for place in own)


def _package_files(top: str) -> list[Path]:
    """The folders of package ``top``, or its one file for a plugin of one module; [] where it is not found."""
    loaded = sys.modules.get(top)
    if loaded is not None and getattr(loaded, "__path__", None):
        return [Path(folder) for folder in loaded.__path__]
    try:
        spec = importlib.util.find_spec(top) if top else None
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    if spec.submodule_search_locations:
        return [Path(folder) for folder in spec.submodule_search_locations]
    return [Path(spec.origin)] if spec.origin and spec.origin != "built-in" else []
