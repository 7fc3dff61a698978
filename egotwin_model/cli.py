"""`egotwin-model`: train the EgoTwin model and sample submissions.

Each command lives in `egotwin_model/commands/<name>.py` as a `register(app)` function
(see `egotwin_bench.cli_app`).
"""

from __future__ import annotations

from egotwin_bench.cli_app import build_app
from egotwin_model import __version__

COMMAND_MODULES: tuple[str, ...] = (
    "train", "sample",
)
"""Modules under `egotwin_model.commands` whose `register(app)` adds their command(s)."""

app = build_app(
    "egotwin-model",
    "EgoTwin generator: motion VAE, triple-branch diffusion transformer, training and sampling.",
    __version__,
    "egotwin_model.commands",
    COMMAND_MODULES,
)

if __name__ == "__main__":
    app()
