"""blrlib: the Bayesian learning rule of Khan & Rue (2023) in PyTorch."""

__version__ = "0.1.0"
