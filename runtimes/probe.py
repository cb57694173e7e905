"""Report which GPU architectures a built runtime environment has kernels for, as JSON.

Run with the interpreter of the environment under test (``<env>/bin/python probe.py torch
vllm``); it needs nothing but that environment (the standard library, the libraries named on
the command line, and the ``cuobjdump`` that triton ships inside it). No GPU is needed:

* torch: the arch flags compiled into the build (``torch.cuda.get_arch_list()``; torch before
  2.11 answers ``[]`` without a GPU, so the same flags are read from ``torch._C`` directly).
* vllm: the cubins and PTX inside its custom-op libraries (``vllm/_C*.so``, ``vllm/_moe_C*.so``).
* bitsandbytes: the same for the ``libbitsandbytes_cuda<XY>.so`` it loads for torch's CUDA.

Output: ``{"packages": {...versions}, "cuda": "12.8", "kernels": {source: [arch, ...]}}``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

_CUBIN = re.compile(r"\.(sm_\d+[af]?)\.cubin$")
_PTX = re.compile(r"\.sm_(\d+[af]?)\.ptx$")


def _cuobjdump() -> Path:
    import triton  # type: ignore[import-not-found]  # a torch dependency on Linux

    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    if not tool.is_file():
        raise SystemExit(f"probe: no cuobjdump at {tool} (triton layout changed?)")
    return tool


def _archs_in(shared_object: Path) -> list[str]:
    """Cubin (sm_XY) and PTX (compute_XY) architectures embedded in ``shared_object``."""
    tool = str(_cuobjdump())
    found: set[str] = set()
    for flag, pattern, prefix in (("--list-elf", _CUBIN, ""), ("--list-ptx", _PTX, "compute_")):
        run = subprocess.run(
            [tool, flag, str(shared_object)], capture_output=True, text=True, check=False
        )
        for line in run.stdout.splitlines():
            match = pattern.search(line.strip())
            if match:
                found.add(prefix + match[1] if prefix else match[1])
    if not found:
        raise SystemExit(f"probe: cuobjdump found no CUDA code in {shared_object}")
    return sorted(found, key=_arch_order)


def _arch_order(arch: str) -> tuple[int, str]:
    digits = re.search(r"\d+", arch)
    return (int(digits[0]) if digits else 0, arch)


def _torch() -> tuple[str, list[str]]:
    import torch  # type: ignore[import-not-found]

    archs = torch.cuda.get_arch_list() or (torch._C._cuda_getArchFlags() or "").split()
    if not archs or torch.version.cuda is None:
        raise SystemExit(f"probe: torch {torch.__version__} is not a CUDA build")
    return torch.version.cuda, sorted(archs, key=_arch_order)


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise SystemExit(f"probe: {name} is not installed in {sys.prefix}")
    return Path(spec.origin).parent


def main(libraries: list[str]) -> None:
    if "torch" not in libraries:
        raise SystemExit("probe: torch is always probed first; name it")
    cuda, torch_archs = _torch()
    report: dict[str, object] = {"cuda": cuda}
    import torch  # type: ignore[import-not-found]

    packages = {"torch": str(torch.__version__)}  # with the local tag: 2.10.0+cu128
    kernels: dict[str, list[str]] = {"torch": torch_archs}
    for library in libraries:
        if library == "torch":
            continue
        packages[library] = importlib.metadata.version(library)
        root = _package_dir(library)
        if library == "vllm":
            files = sorted({*root.glob("_C*.so"), *root.glob("_moe_C*.so")})
        elif library == "bitsandbytes":
            files = [root / f"libbitsandbytes_cuda{cuda.replace('.', '')}.so"]
        else:
            raise SystemExit(f"probe: no rule for the kernels of {library}")
        if not files or not all(f.is_file() for f in files):
            raise SystemExit(f"probe: {library} has no kernel library for CUDA {cuda} in {root}")
        for path in files:
            kernels[f"{library}/{path.name}"] = _archs_in(path)
    report["packages"] = packages
    report["kernels"] = kernels
    json.dump(report, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
