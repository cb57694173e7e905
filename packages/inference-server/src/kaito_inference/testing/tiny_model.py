"""Build a tiny Phi-3 style causal LM and a LoRA adapter for it, fully offline.

Why this exists: tests (ours and the tuning job's) and the local quick start must exercise the real
loading code (``from_pretrained``, peft, safetensors, chat templates) without downloading anything
from a hub. The model has random weights, so its text is gibberish, but it is a real
``Phi3ForCausalLM`` with a real byte-level BPE tokenizer trained on a few sentences and a chat
template that uses Phi-3's ``<|user|>`` / ``<|assistant|>`` / ``<|end|>`` markers.

Everything is deterministic for a given seed: building twice gives byte-identical weights.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

# A handful of sentences is enough for a BPE tokenizer: the byte-level alphabet covers any input and
# the merges only make common English fragments shorter.
_CORPUS = (
    "KAITO is an operator that automates AI model inference and tuning in Kubernetes.",
    "The quick brown fox jumps over the lazy dog.",
    "A workspace names a preset, an instance type and a label selector for GPU nodes.",
    "Hello! How are you today? I am a tiny language model with random weights.",
    "LoRA adapters change a few matrices of the base model and can be loaded at run time.",
    "The inference server speaks the OpenAI API: models, chat completions and completions.",
    "What is the capital of France? Paris is the capital of France.",
    "Write a short poem about clouds, rivers, mountains and the sea.",
    "One two three four five six seven eight nine ten eleven twelve.",
    "def add(a, b):\n    return a + b\n",
)

SPECIAL_TOKENS = (
    "<unk>",
    "<s>",
    "<|endoftext|>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|end|>",
    "<|tool_call|>",
    "<|/tool_call|>",
)

VOCAB_SIZE = 640

# Phi-3 style: one block per message, closed by <|end|>, and an open assistant block to generate.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<|system|>\n' + message['content'] + '<|end|>\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + '<|end|>\n' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{{ '<|assistant|>\n' + (message['content'] or '') + '<|end|>\n' }}"
    "{% elif message['role'] == 'tool' %}{{ '<|user|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

# Attention heads of the tiny model, and head sizes: the smallest (hidden size 64), and the one
# vLLM's CPU attention accepts ("Unsupported CPU attention configuration: head_dim=16" below 32).
_HEADS = 4
DEFAULT_HEAD_DIM = 16
VLLM_HEAD_DIM = 64

DEFAULT_TARGET_MODULES: tuple[str, ...] = ("qkv_proj", "o_proj")


def _train_tokenizer(out_dir: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(SPECIAL_TOKENS[3:]),
        model_max_length=1024,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(out_dir))


def build_tiny_model(out_dir: Path, *, seed: int = 0, head_dim: int = DEFAULT_HEAD_DIM) -> Path:
    """Write a tiny random ``Phi3ForCausalLM`` plus tokenizer to ``out_dir`` and return it.

    ``head_dim`` sets the attention head size (4 heads, so the hidden size is ``4 * head_dim``):
    the default keeps the model as small as transformers allows; vLLM's CPU attention kernels
    need 32 or more (:data:`VLLM_HEAD_DIM`).

    The directory loads offline with ``AutoModelForCausalLM.from_pretrained(out_dir)`` and
    ``AutoTokenizer.from_pretrained(out_dir)``. Generation stops at ``<|end|>`` or
    ``<|endoftext|>`` (both listed in ``generation_config.json``).
    """
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Phi3Config, Phi3ForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _train_tokenizer(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(out_dir))
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Phi3Config(
        vocab_size=len(tokenizer),
        hidden_size=_HEADS * head_dim,
        intermediate_size=2 * _HEADS * head_dim,
        num_hidden_layers=2,
        num_attention_heads=_HEADS,
        num_key_value_heads=_HEADS,
        max_position_embeddings=1024,
        original_max_position_embeddings=1024,
        bos_token_id=ids["<s>"],
        eos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Phi3ForCausalLM(config)
    # Default init gives tiny logits (near-uniform sampling); a larger output scale makes greedy
    # decoding decisive, so different adapters visibly change the text.
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<s>"],
        eos_token_id=[ids["<|endoftext|>"], ids["<|end|>"]],
        pad_token_id=ids["<|endoftext|>"],
    )
    model.save_pretrained(str(out_dir), safe_serialization=True)
    return out_dir


def build_tiny_adapter(
    base_dir: Path,
    out_dir: Path,
    *,
    seed: int = 1,
    target_modules: Sequence[str] = DEFAULT_TARGET_MODULES,
    rank: int = 4,
) -> Path:
    """Write a peft LoRA adapter for the tiny model at ``base_dir`` to ``out_dir`` and return it.

    Both LoRA matrices are random (``init_lora_weights=False``), so ``B`` is non-zero and the
    adapter changes the base model's output.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = AutoModelForCausalLM.from_pretrained(str(base_dir))
    torch.manual_seed(seed)
    lora = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        target_modules=list(target_modules),
        lora_dropout=0.0,
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(base, lora)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.mul_(4.0)
    peft_model.save_pretrained(str(out_dir), safe_serialization=True)
    # Record the local base path, as a tuned adapter would record its base model id.
    cfg_path = out_dir / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = str(base_dir)
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True))
    return out_dir
