"""Training the benchmark's own estimators on a curated dataset: the hand classifier (HandScore) and
the GRU text/motion evaluators (M-FID, R-Precision, MM-Dist, Diversity). Above `evaluate/`: it
reads the reference clips through `evaluate.reference` and validates with the metrics of `metrics/`."""
