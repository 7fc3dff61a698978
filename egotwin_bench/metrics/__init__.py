"""Benchmark metrics: video quality, motion quality, view and hand consistency."""
