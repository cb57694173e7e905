"""LoRA/QLoRA tuning job that turns a dataset into an adapter image."""

__version__ = "0.1.0"
