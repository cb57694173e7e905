"""The live adapter table: which names are served, with one lock per name.

Why this exists: adapters are loaded at start-up and at run time (``/v1/load_lora_adapter``);
requests must be checked before the backend is touched (vLLM's ``OpenAIServingModels``): a missing
or malformed path is a 400, a duplicate without ``load_inplace`` a 400, unloading an unknown name
a 404. A per-name ``asyncio.Lock`` keeps concurrent load/unload of the same name atomic while
different names proceed in parallel.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections import defaultdict
from pathlib import Path

from kaito_inference.adapters.discovery import ADAPTER_CONFIG, is_adapter_dir
from kaito_inference.adapters.scaling import scaled_adapter
from kaito_inference.backends.base import AdapterSpec, InferenceBackend
from kaito_inference.errors import (
    AdapterAlreadyLoaded,
    AdapterNotFound,
    InvalidAdapter,
    ModelNotFound,
)

logger = logging.getLogger(__name__)


class AdapterRegistry:
    """Adapter name -> spec, kept in step with the backend."""

    def __init__(
        self, backend: InferenceBackend, base_model: str, *, work_dir: Path | None = None
    ) -> None:
        self._backend = backend
        self._base = base_model
        self._specs: dict[str, AdapterSpec] = {}
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._work_dir = work_dir  # scaled copies; a temp dir is made on first need

    @property
    def names(self) -> list[str]:
        return sorted(self._specs)

    def get(self, name: str) -> AdapterSpec | None:
        return self._specs.get(name)

    def resolve(self, model: str) -> str | None:
        """Map a request's ``model`` to an adapter name (None: the base model) or raise 404."""
        if model == self._base:
            return None
        if model in self._specs:
            return model
        served = ", ".join([self._base, *self.names])
        raise ModelNotFound(
            f"the model '{model}' does not exist; this server serves: {served}", param="model"
        )

    def _check(self, spec: AdapterSpec, *, replace: bool) -> None:
        if spec.name == self._base:
            raise InvalidAdapter(
                f"adapter name '{spec.name}' is the base model's name", param="lora_name"
            )
        if spec.name in self._specs and not replace:
            raise AdapterAlreadyLoaded(
                f"adapter '{spec.name}' is already loaded; unload it first or set load_inplace",
                param="lora_name",
            )
        if not spec.path.exists():
            raise InvalidAdapter(f"adapter path {spec.path} does not exist", param="lora_path")
        if not is_adapter_dir(spec.path):
            raise InvalidAdapter(
                f"adapter path {spec.path} is not a peft adapter (no {ADAPTER_CONFIG})",
                param="lora_path",
            )
        if not 0.0 <= spec.strength <= 1.0:
            raise InvalidAdapter(
                f"adapter strength must be in [0, 1], got {spec.strength}", param="strength"
            )

    async def load(self, spec: AdapterSpec, *, replace: bool = False) -> None:
        """Check, scale and load an adapter; the name serves requests once this returns."""
        async with self._locks[spec.name]:
            self._check(spec, replace=replace)
            if self._work_dir is None and spec.strength != 1.0:
                self._work_dir = Path(tempfile.mkdtemp(prefix="kaito-adapters-"))
            path = await asyncio.to_thread(
                scaled_adapter, spec.path, self._work_dir or spec.path, spec.name, spec.strength
            )
            await self._backend.load_adapter(AdapterSpec(spec.name, path, spec.strength))
            self._specs[spec.name] = spec
            logger.info(
                "loaded adapter '%s' from %s (strength %s)", spec.name, spec.path, spec.strength
            )

    async def unload(self, name: str) -> None:
        """Unload an adapter; later requests for it get 404."""
        async with self._locks[name]:
            if name not in self._specs:
                raise AdapterNotFound(f"adapter '{name}' is not loaded", param="lora_name")
            # Stop routing to it first, so no new request picks it while the backend unloads.
            spec = self._specs.pop(name)
            try:
                await self._backend.unload_adapter(name)
            except Exception:
                self._specs[name] = spec
                raise
            logger.info("unloaded adapter '%s'", name)
