"""Submission format, validation, the evaluation runner and the leaderboard."""
