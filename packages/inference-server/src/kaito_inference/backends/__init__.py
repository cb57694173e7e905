"""Inference backends behind the ``InferenceBackend`` seam (vllm, transformers, fake)."""
