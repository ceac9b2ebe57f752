"""``lowdim --version``: lowdim's version, its installed plugins' and the libraries it runs on, what a bug report
needs. A plugin whose entry point fails to load is listed with that failure, not as if it worked."""

from __future__ import annotations

import typer

from lowdim_cli.console import out

LIBRARIES = ("torch", "diffusers", "transformers", "safetensors")


def version_text() -> str:
    """Read from the installed packages' metadata: diffusers and transformers are not loaded for it, and a
    library too broken to import still gets its version named."""
    from importlib.metadata import PackageNotFoundError, entry_points, version

    from lowdim.plugins import failed_to_load

    plugins = sorted({(ep.dist.name, ep.dist.version) for ep in entry_points(group="lowdim")
                      if ep.dist is not None and ep.dist.name != "lowdim"})
    failed = failed_to_load()

    def installed(name: str) -> str:
        try:
            return f"{name} {version(name)}"
        except PackageNotFoundError:
            return f"{name} not installed"

    def plugin(name: str, number: str) -> str:
        return f"{name} {number}" + (f" (failed to load: {failed[name]})" if name in failed else "")

    lines = [f"lowdim {version('lowdim')}",
             "plugins: " + (", ".join(plugin(name, number) for name, number in plugins) or "none"),
             ", ".join(installed(name) for name in LIBRARIES)]
    return "\n".join(lines)


def show_version(value: bool) -> None:
    if value:
        out.print(version_text(), highlight=False)
        raise typer.Exit()
