"""Metric providers: each joins an estimator (network or pose backend), the per-clip cache and the
pure metric functions of `egotwin_bench.metrics` behind `evaluate.protocol.MetricProvider`."""
