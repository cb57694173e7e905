"""Map a backend name from the config to a factory, importing heavy engines lazily.

Why this exists: ``kaito-inference`` must start (and its tests run) on machines that have neither
vLLM nor torch; only the chosen backend's module is imported, and a missing extra fails with a
message naming it.
"""

from __future__ import annotations

from kaito_inference.backends.base import InferenceBackend
from kaito_inference.config import ServerConfig
from kaito_inference.errors import BackendUnavailable


def create_backend(config: ServerConfig) -> InferenceBackend:
    """Build the backend named by ``config.backend`` (not started yet)."""
    if config.backend == "fake":
        from kaito_inference.backends.fake import EchoBackend

        return EchoBackend(
            model_name=config.model_name,
            max_model_len=config.max_model_len or 2048,
            tool_call_parser=config.tool_call_parser,
        )
    if config.backend == "transformers":
        try:
            from kaito_inference.backends.transformers import TransformersBackend
        except ImportError as err:
            raise BackendUnavailable(
                "the transformers backend needs the 'transformers' extra: "
                "pip install 'kaito-inference[transformers]'"
            ) from err
        return TransformersBackend(config)
    from kaito_inference.backends.vllm import VllmBackend

    return VllmBackend(config)
