"""EgoTwin benchmark: Nymeria curation, synthetic data, metrics, evaluation."""
__version__ = "0.1.0"
