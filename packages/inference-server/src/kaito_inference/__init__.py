"""OpenAI-compatible inference server with vLLM and transformers backends."""

__version__ = "0.1.0"
