"""EgoTwin generator: motion VAE, triple-branch diffusion transformer, training, sampling."""
__version__ = "0.1.0"
