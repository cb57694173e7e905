"""House-style import contracts: vLLM only in backends/vllm.py; torch only in the generation
process's engine, the tiny-model builder and adapter scaling; transformers also in the
transformers backend, which imports it lazily for its tokenizer (all loaded lazily)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "kaito_inference"

ALLOWED = {
    "vllm": {"backends/vllm.py"},
    "transformers": {
        "backends/transformers.py",
        "backends/_hf_engine.py",
        "testing/tiny_model.py",
    },
    "peft": {"testing/tiny_model.py"},
    "torch": {"backends/_hf_engine.py", "testing/tiny_model.py", "adapters/scaling.py"},
    "safetensors": {"adapters/scaling.py"},
    "tokenizers": {"testing/tiny_model.py"},
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_heavy_imports_stay_in_their_modules() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        for name in _imports(path) & set(ALLOWED):
            if rel not in ALLOWED[name]:
                offenders.append(f"{rel} imports {name}")
    assert offenders == []


def test_app_imports_without_torch() -> None:
    code = (
        "import sys, kaito_inference.app, kaito_inference.cli, kaito_inference.backends.vllm;"
        "print(sorted(m for m in ('torch', 'transformers', 'vllm', 'peft') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
