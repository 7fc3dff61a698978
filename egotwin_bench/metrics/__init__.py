"""Benchmark metrics as pure functions on arrays: Fréchet distance, view errors (TransErr, RotErr),
HandScore F1, R-Precision / MM-Dist / Diversity, and their intervals. Nothing here knows an
estimator, a cache or a submission: the providers in `egotwin_bench.evaluate.providers` join them
(docs/architecture.md)."""
