"""Model preset and GPU SKU catalog, GPU-fitting estimator and Workspace validation."""

__version__ = "0.1.0"
