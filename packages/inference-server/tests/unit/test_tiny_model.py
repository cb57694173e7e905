"""The tiny model loads offline with the Auto classes, is deterministic, and the adapter bites."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="needs the transformers extra")
transformers = pytest.importorskip("transformers", reason="needs the transformers extra")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_loads_with_auto_classes_and_uses_phi3_chat_markers(tiny_model_dir: Path) -> None:
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    assert type(model).__name__ == "Phi3ForCausalLM"
    assert model.config.hidden_size == 64
    assert model.config.num_hidden_layers == 2
    assert 512 <= model.config.vocab_size <= 1000
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "Hello"}], add_generation_prompt=True, tokenize=False
    )
    assert prompt == "<|user|>\nHello<|end|>\n<|assistant|>\n"
    assert (tiny_model_dir / "model.safetensors").is_file()
    end_id = tok.convert_tokens_to_ids("<|end|>")
    assert end_id in model.generation_config.eos_token_id


def test_same_seed_same_bytes_other_seed_differs(tiny_model_dir: Path, tmp_path: Path) -> None:
    from kaito_inference.testing.tiny_model import build_tiny_model

    again = build_tiny_model(tmp_path / "again", seed=0)
    other = build_tiny_model(tmp_path / "other", seed=3)
    weights = "model.safetensors"
    assert _digest(again / weights) == _digest(tiny_model_dir / weights)
    assert _digest(again / "tokenizer.json") == _digest(tiny_model_dir / "tokenizer.json")
    assert _digest(other / weights) != _digest(tiny_model_dir / weights)


def test_adapter_has_nonzero_b_and_changes_logits(
    tiny_model_dir: Path, tiny_adapter_dir: Path
) -> None:
    from peft import PeftModel
    from safetensors.torch import load_file

    tensors = load_file(tiny_adapter_dir / "adapter_model.safetensors")
    b_weights = [t for name, t in tensors.items() if "lora_B" in name]
    assert b_weights
    assert all(t.abs().sum() > 0 for t in b_weights)
    base = transformers.AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = torch.tensor([[1, 20, 30, 40]])
    with torch.no_grad():
        base_logits = base(ids).logits.clone()
        tuned = PeftModel.from_pretrained(base, tiny_adapter_dir)
        tuned_logits = tuned(ids).logits
    assert not torch.allclose(base_logits, tuned_logits)


def test_cli_builds_model_and_adapter(tmp_path: Path) -> None:
    from kaito_inference.cli import main

    rc = main(["make-tiny-model", str(tmp_path / "m"), "--adapter-dir", str(tmp_path / "a")])
    assert rc == 0
    assert (tmp_path / "m" / "config.json").is_file()
    assert (tmp_path / "a" / "adapter_config.json").is_file()
