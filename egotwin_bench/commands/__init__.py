"""CLI commands of `egotwin-bench`, one module per command group."""
