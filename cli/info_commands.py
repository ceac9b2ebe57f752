"""``lowdim spaces``, ``lowdim models``, ``lowdim inspect`` and ``lowdim show``: what exists, what it costs,
and what a file is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

from lowdim import json_text
from lowdim.option_words import counted
from lowdim.paths import expand_user
from lowdim.registry import get_registry
from lowdim_cli.console import out

if TYPE_CHECKING:
    from lowdim.sizing import SizeReport

# --model-config, as every command that takes it writes it (cli/shared_options.py's ModelConfig and inspect's): the
# folder is what show's use lines name, a registered model's name is the same folder by its name.
MODEL_CONFIG_METAVAR = "FOLDER"
MODEL_CONFIG_HELP = ("With a single-file .safetensors model: a local diffusers folder of the same architecture, or a "
                     "registered model's name (tinyfaces), whose config files are read instead of the hub's (needed "
                     "offline). Files lowdim merge wrote name their own.")


def as_written(text: str, style: str = "") -> Text:
    """``text`` as rich prints it: as written, no markup ("[bold]", "[a-z]" in a glob), no emoji code (":smile:" in a
    file name) and no highlighting. A path a user typed, a file's words and a plugin's are not rich's to style, and a
    path or command is copied from what is printed."""
    return Text(text, style=style)


def parse_options(pairs: list[str]) -> dict:
    """``["a=64", "init=gaussian"]`` -> {"a": 64, "init": "gaussian"} (values parsed as JSON when they can be)."""
    from lowdim.errors import ConfigError

    options = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got '{pair}'")
        try:
            options[key] = json_text.loads(raw)
        except ValueError:  # not JSON (nested too deeply included): the text itself
            options[key] = raw
    return options


def spaces(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also list every config option.")] = False):
    """List the weight spaces from lowdim and installed plugins."""
    registry = get_registry()
    table = Table(title="Weight spaces", show_lines=verbose)
    for column in ("name", "plugin", "summary"):
        table.add_column(column)
    for name, entry in sorted(registry.spaces.items()):
        summary = entry.value.summary
        if verbose:
            defaults = entry.value.config_class()
            options = [f"  {k} = {getattr(defaults, k)!r}: {h}" for k, h in entry.value.config_class.help().items()]
            summary = "\n".join([summary, *options])
        table.add_row(as_written(name), as_written(entry.plugin), as_written(summary))
    out.print(table)
    from lowdim.plugins import SPACES_NO_PLUGINS_NOTE, plugins_disabled

    if plugins_disabled():  # a plugin's space the user expects here is then missing without a word
        out.print(SPACES_NO_PLUGINS_NOTE[:1].upper() + SPACES_NO_PLUGINS_NOTE[1:], highlight=False)


def models():
    """List the model backends (architectures) from lowdim and installed plugins; `lowdim show NAME` says where
    one's files are."""
    from lowdim.plugins import NO_PLUGINS_NOTE, plugins_disabled

    table = Table(title="Models")
    for column in ("name", "plugin", "aliases", "layer sets (default first)", "description"):
        # hub ids are long single words: wrap, never cut; the prose keeps a readable width on a narrow terminal
        table.add_column(column, overflow="fold", min_width=20 if column == "description" else None)
    for backend, plugin, aliases in registered_models():
        sets = [backend.default_layer_set] + [s for s in backend.layer_sets if s != backend.default_layer_set]
        table.add_row(*map(as_written, (backend.name, plugin, ", ".join(aliases), ", ".join(sets),
                                        backend.description)))
    out.print(table)
    if not table.rows and plugins_disabled():
        out.print(NO_PLUGINS_NOTE[:1].upper() + NO_PLUGINS_NOTE[1:], highlight=False)


def registered_models() -> list[tuple]:
    """(backend, the plugin it came from, the aliases that run it) of each registered model, by name. Read from
    the table itself: a name or alias two plugins claim is left out of it (their warning says so), and the rest
    are listed. lowdim's own backend (its `sd` entry point) is "builtin", as its spaces are."""
    from lowdim.plugins import BUILTIN_NAMES, is_lowdims_own

    registry = get_registry()
    builtin = BUILTIN_NAMES["lowdim.spaces.builtin"]  # the word `lowdim spaces` shows for lowdim's own
    table = registry.backends
    entries = {entry.value.name: entry for entry in table.values()}
    return [(entry.value, builtin if is_lowdims_own(registry.manager, entry.plugin) else entry.plugin,
             [alias for alias in dict.fromkeys(entry.value.aliases)
              if alias != name and alias in table and table[alias].value is entry.value])
            for name, entry in sorted(entries.items())]


def model_backend(model: str, model_config: str | None = None):
    """The backend of ``--model``: a registered name, else (a path or a hub id) an SD1.x model read from it.

    Refused as the commands that load the model refuse it: a near miss of a registered name names the model
    meant, and a file name (``model.safetensors``) that is not there is "no such model file or folder"."""
    from lowdim_sd.registered_models import registered_entry

    registry = get_registry()
    # A name two plugins claim is the line saying to uninstall one; a registered model's folder is that model.
    entry = registered_entry(model)
    if entry is not None:
        return entry.value
    from lowdim_sd.loading import refuse_a_misspelt_name

    refuse_a_misspelt_name(model, list(registry.backends))
    if "/" in model or Path(model).suffix or expand_user(model).exists():
        from lowdim_sd.skeletons import path_backend

        return path_backend(model, model_config)
    return registry.backend(model)  # the one-line "unknown model" error


def inspect_sizes(model: str, space: str, layers: str | None, options: dict, file_sizes: bool = True,
                  model_config: str | None = None) -> SizeReport:
    """The size report behind ``lowdim inspect``; with ``file_sizes`` it also writes real files to measure."""
    from lowdim.sizing import BYTES, adapter_file_bytes, size_report  # torch: not for --help

    registry = get_registry()
    backend = model_backend(model, model_config)
    chosen_space = registry.make_space(space, options)
    skeleton, layer_set = backend.skeleton(), backend.resolve_layer_set(layers)
    if getattr(chosen_space, "learns_tokens", False) and layers is None:
        from lowdim.injection.select import TOKEN_EMBEDDINGS

        layer_set = TOKEN_EMBEDDINGS
    report = size_report(skeleton, chosen_space, layer_set, backend.layer_group)
    if file_sizes:
        report.file_bytes = {dtype: adapter_file_bytes(skeleton, chosen_space, layer_set, dtype) for dtype in BYTES}
    return report


def inspect(
    model: Annotated[str, typer.Option("--model", "-m", help=(
        "sd15, tinyfaces, any registered name (see `lowdim models`), a hub id, a diffusers folder or a "
        ".safetensors file; a folder or hub id is read from its config files alone."))],
    space: Annotated[str, typer.Option("--space", "-s", help="Weight space, e.g. lidb or lora (see `lowdim spaces`).")],
    layers: Annotated[str | None, typer.Option(
        "--layers", "-l", help="Layer set name (e.g. unet+text, text) or comma-separated glob patterns.")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Space option KEY=VALUE, repeatable, e.g. --set a=64 --set rank=2.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    files: Annotated[bool, typer.Option(
        help="Also write a fresh adapter file per dtype to report its real size on disk.")] = True,
    model_config: Annotated[str | None, typer.Option(
        metavar=MODEL_CONFIG_METAVAR,
        help=MODEL_CONFIG_HELP + " Without it, inspect loads the file's weights to tell the variant.")] = None,
):
    """Count trainable parameters and bytes of a space on an architecture, per layer group.

    No weights are downloaded: the architecture is built on PyTorch's meta device (from the config
    files of a folder or hub id; a single file without --model-config is loaded to read it).

    Example: lowdim inspect --model sd15 --space lidb
    """
    report = inspect_sizes(model, space, layers, parse_options(set_ or []), file_sizes=files,
                           model_config=model_config)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    table = Table(title=as_written(f"{space} on {model}, layer set '{report.layer_set}'", "table.title"))
    for column in ("layer group", "layers", "trainable params", "fp32 bytes", "fp16 bytes"):
        table.add_column(column, justify="left" if column == "layer group" else "right")
    for row in report.rows:
        table.add_row(as_written(row.group), f"{row.layers}", f"{row.params:,}", f"{row.bytes_fp32:,}",
                      f"{row.bytes_fp16:,}")
    total = report.total
    table.add_row("[bold]total", f"[bold]{total.layers}", f"[bold]{total.params:,}",
                  f"[bold]{total.bytes_fp32:,}", f"[bold]{total.bytes_fp16:,}")
    out.print(table)
    if report.file_bytes:
        sizes = ", ".join(f"{size:,} bytes in {dtype}" for dtype, size in report.file_bytes.items())
        out.print(f"Adapter file on disk (tensors + metadata): {sizes}", markup=False)
    if report.notes:
        out.print(as_written(f"{counted(len(report.notes), 'layer note')}, e.g. {report.notes[0]}", "dim"))


# The rows of show whose value is code to paste (a registered model's `from_pretrained(...)` line): printed under
# the table, where a narrow terminal's table would fold them inside its borders. The only code row any file gives;
# a path row stays in the table, read there.
PASTED_ROWS = ("in diffusers",)


# The box's columns around show's two cells: "│ field │ value │".
SHOW_TABLE_BORDERS = 7
# What marks a word as a path or a hub id (a user copies it into the next command): a folder separator.
PATH_SEPARATORS = ("/", "\\")


def folds_a_path(rows: list[tuple[str, str]], width: int) -> bool:
    """Whether show's table at ``width`` columns would fold or wrap a path or hub id of some value across lines
    inside its borders, where no copy takes it whole. A value holding one counts whole, since a path may hold
    spaces ("My Models/sd15") where the table would wrap it; prose and a config's JSON are read there as they are."""
    value_width = width - field_width(rows) - SHOW_TABLE_BORDERS
    return any(cell_len(value) > value_width and any(sep in value for sep in PATH_SEPARATORS) for _, value in rows)


def field_width(rows: list[tuple[str, str]]) -> int:
    return max((cell_len(name) for name, _ in rows), default=0)


def show_lines(title: str, rows: list[tuple[str, str]]) -> None:
    """Show's rows as the table's columns without its box: each value one line the terminal soft-wraps, copied whole.
    The field is padded as in the table (no colon), so a row reads as the table's does."""
    out.print(as_written(title, "table.title"))
    width = field_width(rows)
    for name, value in rows:
        out.print(Text.assemble(as_written(name, "bold"), " " * (width - cell_len(name) + 2), as_written(value)))


def show_table(title: str, rows: list[tuple[str, str]]) -> None:
    table = Table(title=as_written(title, "table.title"), title_justify="left",
                  show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in rows:  # what a file says is text: a token "[red]" is no markup to rich
        table.add_row(as_written(name), as_written(value))
    out.print(table)


def show(
    target: Annotated[Path, typer.Argument(
        metavar="FILE", show_default=False,
        help="A lowdim adapter, hypernetwork, weight folder or shard, or encoder-feature file; an exported LoRA or "
             "another tool's; a checkpoint; or a registered model name (see `lowdim models`).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
):
    """Say what a file is and how it was made, from its header alone (no tensor is loaded).

    An adapter shows its space, layers, size, seed, base model, token and recipe (the image, hypernetwork,
    steps and rank that made it); a hypernetwork what it predicts, for which model, from which encoder and
    how it was trained; a weight folder its identities and training settings; a registered model name where
    its files are (the folder diffusers' from_pretrained takes, or its hub id). Each ends with the command
    that uses it.

    Examples:
    \v\b
      lowdim show me/adapter.safetensors
      lowdim show tinyfaces
    """
    from lowdim_sd.file_info import describe
    from lowdim_sd.file_info_parts import one_line, pasteable

    info = describe(target)
    if as_json:
        print(json.dumps(info.as_dict(), indent=2))
        return
    # A file name may hold a line break or an escape code: the title is one line, the path in it escaped and cut.
    title = f"{one_line(str(info.path))}: {one_line(info.kind)}"
    rows = info.table_rows()
    tabled = [(name, value) for name, value in rows if name not in PASTED_ROWS]
    if folds_a_path(tabled, out.width):
        show_lines(title, tabled)
    else:
        show_table(title, tabled)
    for name, value in rows:  # one soft-wrapped line, as `use it:` is: copied whole, no border in it
        if name in PASTED_ROWS:
            out.print(as_written(f"{name}: {value}"))
    if info.use:
        out.print(as_written(f"use it: {pasteable(info.use)}"))  # a path's line break as $'\n': it still runs


def register(app: typer.Typer) -> None:
    app.command()(spaces)
    app.command()(models)
    app.command()(inspect)
    app.command()(show)

