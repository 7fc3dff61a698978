"""Submission format, validation, reference clips, the per-clip cache, the metric providers
(`providers/`), the evaluation runner and the leaderboard (docs/architecture.md)."""
