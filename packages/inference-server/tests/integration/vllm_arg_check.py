"""Check engine arguments against the installed vLLM's own ``EngineArgs`` and CLI parser.

Run with the interpreter of an environment that has vLLM (the kaito-inference image's, built by
runtimes/envs.py): ``python vllm_arg_check.py cases.json``. Each case is a dict of engine
keyword arguments as ``kaito_inference.backends.vllm.engine_kwargs`` builds them. For each:

1. ``AsyncEngineArgs(**kwargs)``: every name must be an engine argument;
2. the same arguments as ``--flag value`` go through ``AsyncEngineArgs.add_cli_args`` on vLLM's
   ``FlexibleArgumentParser`` (types and choices, e.g. max_lora_rank), and
3. ``AsyncEngineArgs.from_cli_args`` must give back the values passed.

Prints ``{"checked": N, "failures": [...], "lora_ranks": [...]}`` (vLLM's allowed
``max_lora_rank`` values). No GPU and no model download are needed.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import typing
from typing import Any


def _argv(kwargs: dict[str, Any]) -> list[str]:
    argv: list[str] = []
    for key, value in kwargs.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, list):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv


def _check(kwargs: dict[str, Any], engine_args: Any, parser_cls: Any) -> str | None:
    try:
        engine_args(**kwargs)
    except TypeError as err:
        return f"EngineArgs rejects the names: {err}"
    parser = engine_args.add_cli_args(parser_cls())
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            namespace = parser.parse_args(_argv(kwargs))
    except SystemExit:
        return f"vLLM's parser rejects {_argv(kwargs)}: {stderr.getvalue().strip()[-400:]}"
    parsed = engine_args.from_cli_args(namespace)
    wrong = {
        key: (value, getattr(parsed, key))
        for key, value in kwargs.items()
        if getattr(parsed, key) != value
    }
    return f"parsed back differently (given, parsed): {wrong}" if wrong else None


def main(path: str) -> None:
    from vllm.config.lora import MaxLoRARanks
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    with open(path) as handle:
        cases = json.load(handle)
    failures = []
    for kwargs in cases:
        problem = _check(kwargs, AsyncEngineArgs, FlexibleArgumentParser)
        if problem:
            failures.append({"kwargs": kwargs, "problem": problem})
    report = {
        "checked": len(cases),
        "failures": failures,
        "lora_ranks": list(typing.get_args(MaxLoRARanks)),
    }
    sys.stdout.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
