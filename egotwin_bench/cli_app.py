"""The shape both CLIs share: a typer app whose commands live one module each.

Each command module `<package>.commands.<name>` defines `register(app)`; heavy imports (torch,
ray, cv2) happen inside the command bodies so `--help` stays fast.
"""

from __future__ import annotations

import importlib

import typer


def build_app(name: str, help: str, version: str, commands_package: str, modules: tuple[str, ...]) -> typer.Typer:
    """A typer app with a `version` command and the commands of `commands_package.<module>`."""
    app = typer.Typer(name=name, help=help, no_args_is_help=True, add_completion=False,
                      pretty_exceptions_show_locals=False)

    @app.callback()
    def main() -> None:
        """Run `COMMAND --help` for the options of each command."""

    @app.command("version")
    def print_version() -> None:
        """Print the toolkit version."""
        typer.echo(version)

    for module in modules:
        importlib.import_module(f"{commands_package}.{module}").register(app)
    return app
