"""Lazy loading: importing the app, the CLI and the vLLM backend module loads none of torch,
transformers, vLLM or peft. Which module may import them at all is .importlinter's
``inference-third-party`` contract (run by ``make lint``); this checks what it cannot, that the
allowed imports happen only when a backend starts."""

from __future__ import annotations

import subprocess
import sys


def test_app_imports_without_torch() -> None:
    code = (
        "import sys, kaito_inference.app, kaito_inference.cli, kaito_inference.backends.vllm;"
        "print(sorted(m for m in ('torch', 'transformers', 'vllm', 'peft') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
