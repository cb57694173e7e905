"""Command line of the ``kaito-inference`` console script.

Subcommands:
  * ``serve``: run the OpenAI-compatible server (configuration layered as YAML, env, flags);
  * ``make-tiny-model``: build the offline tiny Phi-3 style model (and optionally a LoRA adapter)
    that tests and the local quick start use.

Heavy imports (torch, transformers, uvicorn) happen inside the subcommands so ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _add_serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the inference server")
    p.add_argument("--config", type=Path, help="YAML file (snake_case keys of ServerConfig)")
    p.add_argument("--model", help="local directory or Hugging Face id")
    p.add_argument("--backend", choices=["vllm", "transformers", "fake"])
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--adapters-dir", dest="adapters_dir", type=Path)
    p.add_argument("--served-model-name", dest="served_model_name")
    p.add_argument("--max-model-len", dest="max_model_len", type=int)
    p.add_argument("--dtype")
    p.add_argument("--tensor-parallel-size", dest="tensor_parallel_size", type=int)
    p.add_argument("--gpu-memory-utilization", dest="gpu_memory_utilization", type=float)
    p.add_argument("--tool-call-parser", dest="tool_call_parser")
    p.add_argument("--reasoning-parser", dest="reasoning_parser")
    p.add_argument("--chat-template", dest="chat_template")
    p.add_argument("--api-keys-file", dest="api_keys_file", type=Path)
    p.add_argument("--hf-token-file", dest="hf_token_file", type=Path)
    p.add_argument("--max-concurrency", dest="max_concurrency", type=int)
    p.add_argument("--log-level", dest="log_level")
    p.add_argument(
        "--trust-remote-code", dest="trust_remote_code", action="store_true", default=None
    )
    p.add_argument("--offline", dest="offline", action="store_true", default=None)
    p.add_argument(
        "--allow-runtime-lora",
        dest="allow_runtime_lora",
        action=argparse.BooleanOptionalAction,
        default=None,
    )


def _add_tiny_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("make-tiny-model", help="build the offline tiny test model")
    p.add_argument("dir", type=Path, help="output directory of the model")
    p.add_argument("--adapter-dir", type=Path, help="also build a LoRA adapter here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--head-dim",
        type=int,
        default=None,
        help="attention head size (default 16; vLLM's CPU attention needs 32 or more)",
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the console script."""
    parser = argparse.ArgumentParser(
        prog="kaito-inference", description=(__doc__ or "").split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_serve_parser(sub)
    _add_tiny_parser(sub)
    return parser


def _make_tiny_model(args: argparse.Namespace) -> int:
    from kaito_inference.testing.tiny_model import build_tiny_adapter, build_tiny_model

    model_dir = build_tiny_model(
        args.dir, seed=args.seed, **({} if args.head_dim is None else {"head_dim": args.head_dim})
    )
    print(f"tiny model written to {model_dir}")
    if args.adapter_dir is not None:
        adapter_dir = build_tiny_adapter(model_dir, args.adapter_dir, seed=args.seed + 1)
        print(f"tiny adapter written to {adapter_dir}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from kaito_inference.config import ConfigError, load_config
    from kaito_inference.server import run_server

    overrides = {
        k: v for k, v in vars(args).items() if k not in {"command", "config"} and v is not None
    }
    try:
        config = load_config(args.config, overrides)
    except ConfigError as err:
        print(f"kaito-inference: {err}", file=sys.stderr)
        return 2
    return run_server(config)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kaito-inference`` console script."""
    args = build_parser().parse_args(argv)
    if args.command == "make-tiny-model":
        return _make_tiny_model(args)
    return _serve(args)


if __name__ == "__main__":
    raise SystemExit(main())
