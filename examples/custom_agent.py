"""Write your own agents by subclassing: a rule-based calculator that an LLM tutor consults.

Run it with ``python examples/custom_agent.py [--fake] [--max-tokens N] [--oplog FILE]``.
The calculator needs no model at all; the tutor is a ChatAgent that asks the calculator before
it answers, so the model only has to phrase a result it was given.
"""

from __future__ import annotations

import argparse
import ast
import operator
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import llmos.actors as actors
from llmos.actors import ActorRef, handler, message
from llmos.agents import Agent, AgentError, ChatAgent, GetOpLog, Prompt
from llmos.models import FakeModel


@message("example.Calculate")
class Calculate:
    """Ask the calculator to evaluate an arithmetic expression."""

    expression: str


_OPS: dict[type[Any], Any] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
}


class Calculator(Agent):
    """Evaluates arithmetic: + - * / ** and brackets."""

    agent_max_text_chars = 200  # input validation: longer expressions are refused

    @handler(Calculate)
    def calculate(self, msg: Calculate) -> float:
        try:
            return float(self._eval(ast.parse(msg.expression, mode="eval").body))
        except (SyntaxError, ZeroDivisionError, KeyError) as exc:
            raise AgentError(f"cannot evaluate {msg.expression!r}: {exc!r}") from exc

    def _eval(self, node: ast.AST) -> float:
        # Walk the syntax tree instead of eval(): only numbers and the operators above.
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return node.value
        if isinstance(node, ast.BinOp):
            return _OPS[type(node.op)](self._eval(node.left), self._eval(node.right))  # type: ignore[no-any-return]
        if isinstance(node, ast.UnaryOp):
            return _OPS[type(node.op)](self._eval(node.operand))  # type: ignore[no-any-return]
        raise KeyError(type(node).__name__)


EXPRESSION = re.compile(r"[\d.(][\d.\s()+\-*/]*[\d)]")


class Tutor(ChatAgent):
    """A maths tutor: a ChatAgent that consults the calculator before answering."""

    def __init__(self, model: ActorRef, calculator: ActorRef, **kwargs: Any) -> None:
        super().__init__(model, "You are a friendly maths tutor. Answer in one sentence.", **kwargs)
        self.calculator = calculator

    def gather_context(self, incoming: Sequence[dict[str, Any]]) -> str:
        # Called before every answer: find arithmetic in what was said and compute it.
        found = EXPRESSION.search(incoming[-1]["text"]) if incoming else None
        if found is None:
            return ""
        value = self.ask_agent(self.calculator, Calculate(found.group().strip()), timeout=5)
        return f"(The calculator says {found.group().strip()} = {value:g}. Use this result.)"


def fake_tutor_reply(messages: list[dict[str, Any]]) -> str:
    """What the fake model says: it repeats the calculator's result, if it was given one."""
    found = re.search(r"says (.+?) = (\S+)\. Use", messages[-1]["content"])
    return f"{found.group(1)} makes {found.group(2)}." if found else "Ask me a sum!"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fake", action="store_true", help="use the fake model")
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens per answer")
    parser.add_argument("--oplog", type=Path, help="append the calculator's log to this file")
    args = parser.parse_args(argv)

    try:
        calculator = Calculator.start(oplog=args.oplog, name="calculator")
        print("calculator:", calculator.ask(Calculate("2 ** 10"), timeout=5).get())
        try:  # validation: a message of the wrong shape gets a clear error, the agent goes on
            calculator.ask(Calculate("x" * 300), timeout=5).get()
        except AgentError as exc:
            print("refused:", exc)

        if args.fake:
            model: ActorRef = FakeModel.start(fake_tutor_reply, name="model")
        else:
            from llmos.models import ModelActor

            model = ModelActor.start(name="model")
        tutor = Tutor.start(model, calculator, max_new_tokens=args.max_tokens, name="tutor")
        for question in ["What is 12 * (3 + 4)?", "And 1.5 / 4?"]:
            answer = tutor.ask(Prompt(question, sender="student"), timeout=120).get()
            print(f"student: {question}\ntutor: {answer.text}")

        # Every agent keeps an operation log: who did what, when, how long, how it ended.
        for record in calculator.ask(GetOpLog(), timeout=5).get():
            print(f"log: {record['op']:<10} {record['outcome']:<8} {record['seconds']:.4f} s")
    finally:
        actors.stop_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
