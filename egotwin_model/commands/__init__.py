"""CLI commands of `egotwin-model`, one module per command group."""
