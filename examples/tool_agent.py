"""A chat agent that calls tools: a Python calculator and an MCP server's tools.

The calculator is a typed function made a tool with ``@tool``; it runs as a tool actor under
the kernel. The MCP server (``examples/mcp_words_server.py``, written with the official SDK) is
started as a child process by an ``McpTools`` actor, which offers its tools the same way. The
agent lets the model pick a call under constrained decoding (so every call parses and fits
its tool's schema, even on the 135M default model), runs it, and answers with the result.

Run: ``python examples/tool_agent.py [--fake] [--max-tokens 24]``. ``--fake`` uses a scripted
stand-in model that picks tools by keyword (no torch needed); without it the default model
decides, and a 135M model often picks a poor tool: the call is still valid, and the
observation tells it what happened.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Literal

import llmos.actors as actors
from llmos.actors import ActorRef
from llmos.agents import ChatAgent, GetToolCalls, McpTools, Prompt, spawn, tool
from llmos.models import FakeModel

HERE = Path(__file__).resolve().parent
QUESTIONS = ["What is 12 times 7?", "How many words are in 'the quick brown fox jumps'?"]


@tool
def calculator(a: float, op: Literal["+", "-", "*", "/"], b: float) -> float:
    """Arithmetic on two numbers.

    Args:
        a: the first number.
        op: the operation.
        b: the second number.
    """
    if op == "/" and b == 0:
        raise ZeroDivisionError("division by zero")
    return {"+": a + b, "-": a - b, "*": a * b}[op] if op != "/" else a / b


def scripted(messages: list[dict[str, Any]]) -> str:
    """The stand-in model: a tool call chosen by keyword, then "none", then an answer."""
    last = messages[-1]["content"]
    if "You can use tools" not in messages[0]["content"]:
        result = last.split("Tool results:\n")[-1].split("->")[-1].strip()
        return f"The answer is {result}."
    if last.startswith("Result of"):
        return json.dumps({"tool": "none"})
    if "words" in last:
        text = last.split("'")[1] if "'" in last else last
        return json.dumps({"tool": "word_count", "arguments": {"text": text}})
    return json.dumps({"tool": "calculator", "arguments": {"a": 12, "op": "*", "b": 7}})


def start_model(fake: bool) -> ActorRef:
    if fake:
        return FakeModel.start(scripted, name="model")
    from llmos.models import ModelActor

    return ModelActor.start(name="model")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fake", action="store_true", help="a scripted stand-in model")
    parser.add_argument("--max-tokens", type=int, default=24, help="tokens per answer")
    args = parser.parse_args()
    try:
        model = start_model(args.fake)
        words = spawn(
            McpTools, command=[sys.executable, str(HERE / "mcp_words_server.py")], name="mcp"
        )
        agent = spawn(
            ChatAgent,
            model,
            "You are a helpful assistant. Use the tool results in your answer.",
            tools=[calculator, words],
            tool_choice="required",
            max_tool_calls=2,
            max_new_tokens=args.max_tokens,
            temperature=0.0,
            name="helper",
        )
        for question in QUESTIONS:
            reply = agent.ask(Prompt(question), timeout=300).get()
            calls = agent.ask(GetToolCalls(), timeout=10).get()
            print(f"you: {question}")
            for call in calls["calls"]:
                if call["ok"] is None:
                    outcome = "(the same call again: not run, the loop stops)"
                elif call["ok"]:
                    outcome = call["content"]
                else:
                    outcome = f"{call['error_type']}: {call['content']}"
                print(f"  tool {call['tool']}({json.dumps(call['arguments'])}) -> {outcome}")
            print(f"  (tool loop stopped by: {calls['stopped_by']})")
            print(f"helper: {reply.text}")
    finally:
        actors.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
