"""`egotwin-bench`: curate Nymeria, make synthetic data, train evaluators, score submissions.

Each command lives in `egotwin_bench/commands/<name>.py` as a `register(app)` function
(see `egotwin_bench.cli_app`).
"""

from __future__ import annotations

from egotwin_bench.cli_app import build_app
from egotwin_bench import __version__

COMMAND_MODULES: tuple[str, ...] = (
    "curation",
    "evaluate",
    "evaluators",
    "hand_classifier",
    "synthetic",
)
"""Modules under `egotwin_bench.commands` whose `register(app)` adds their command(s)."""

app = build_app(
    "egotwin-bench",
    "EgoTwin benchmark toolkit: Nymeria curation, synthetic data, metrics and leaderboards.",
    __version__,
    "egotwin_bench.commands",
    COMMAND_MODULES,
)

if __name__ == "__main__":
    app()
