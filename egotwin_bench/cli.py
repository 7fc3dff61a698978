"""`egotwin-bench`: curate Nymeria, make synthetic data, train evaluators, score submissions.

Each command lives in `egotwin_bench/commands/<name>.py` as a `register(app)` function that
defines it; heavy imports (torch, ray, cv2) happen inside the command bodies so `--help` is fast.
"""

from __future__ import annotations

import importlib

import typer

from egotwin_bench import __version__

app = typer.Typer(
    name="egotwin-bench",
    help="EgoTwin benchmark toolkit: Nymeria curation, synthetic data, metrics and leaderboards.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

COMMAND_MODULES: tuple[str, ...] = (
    "curation",
    "evaluate",
    "hand_classifier",
)
"""Modules under `egotwin_bench.commands` whose `register(app)` adds their command(s)."""


@app.callback()
def main() -> None:
    """Run `COMMAND --help` for the options of each command."""


@app.command()
def version() -> None:
    """Print the toolkit version."""
    typer.echo(__version__)


for _name in COMMAND_MODULES:
    importlib.import_module(f"egotwin_bench.commands.{_name}").register(app)


if __name__ == "__main__":
    app()
