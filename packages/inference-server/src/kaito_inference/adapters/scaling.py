"""Scale a LoRA adapter's strength by scaling its ``lora_B`` weights into a copy.

Why this exists: ``strength`` in [0, 1] must work on every backend. LoRA adds ``B @ A * alpha/r``
to a layer, so multiplying every ``lora_B`` matrix by ``s`` scales the adapter's effect by exactly
``s``. vLLM cannot scale a registered adapter, so we register a scaled copy instead; the
transformers backend uses the same copy so both backends agree. Strength 1 uses the original.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from kaito_inference.errors import InvalidAdapter

WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")


def scaled_adapter(src: Path, work_dir: Path, name: str, strength: float) -> Path:
    """Return a directory with the adapter at ``strength``; ``src`` itself when strength is 1."""
    if strength == 1.0:
        return src
    import torch  # the transformers and vllm extras both ship torch

    dst = work_dir / f"{name}-s{strength:g}"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*WEIGHT_FILES))
    if (src / WEIGHT_FILES[0]).is_file():
        from safetensors.torch import load_file, save_file

        tensors = load_file(src / WEIGHT_FILES[0])
        save_file(_scale(tensors, strength), dst / WEIGHT_FILES[0])
    elif (src / WEIGHT_FILES[1]).is_file():
        tensors = torch.load(src / WEIGHT_FILES[1], map_location="cpu", weights_only=True)
        torch.save(_scale(tensors, strength), dst / WEIGHT_FILES[1])
    else:
        raise InvalidAdapter(
            f"adapter '{name}' at {src} has no weights ({' or '.join(WEIGHT_FILES)})"
        )
    return dst


def _scale(tensors: dict[str, Any], strength: float) -> dict[str, Any]:
    scaled = 0
    out = {}
    for key, value in tensors.items():
        if "lora_B" in key:
            value = value * strength
            scaled += 1
        out[key] = value.contiguous()
    if scaled == 0:
        raise InvalidAdapter("adapter has no lora_B weights, so its strength cannot be scaled")
    return out
