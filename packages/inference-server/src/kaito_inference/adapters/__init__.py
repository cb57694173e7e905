"""LoRA adapters: discovery under the adapters directory, strength scaling, the live table."""
