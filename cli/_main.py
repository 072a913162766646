"""The ``llmos`` command: ``demo``, ``chat``, ``node``, ``status`` and ``--version``.

Errors print as one clear line (``llmos COMMAND: ErrorType: what happened``), not a traceback.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["build_parser", "main"]


def _version() -> str:
    try:
        return importlib.metadata.version("llmos")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def _demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return run_demo(
        model=args.model,
        turns=args.turns,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        seed=args.seed,
        question=args.question,
        save=args.save,
        device=args.device,
        fake=args.fake,
    )


def _chat(args: argparse.Namespace) -> int:
    from ._demo import run_chat_session

    return run_chat_session(
        model=args.model,
        persona=args.persona,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        seed=args.seed,
        device=args.device,
        fake=args.fake,
    )


def _status(args: argparse.Namespace) -> int:
    from ._status import print_status

    return print_status(
        args.address, timeout=args.timeout, keys=args.keys, server_key=args.server_key
    )


def _model_flags(parser: argparse.ArgumentParser, max_tokens: int) -> None:
    parser.add_argument(
        "--model",
        default=None,
        help="Hugging Face id, local directory or .gguf file "
        "(default: the embedded SmolLM2-135M-Instruct)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument("--max-tokens", type=int, default=max_tokens, help="tokens per answer")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--seed", type=int, default=None, help="seed for sampling")
    parser.add_argument("--fake", action="store_true", help="a deterministic fake model (no ML)")


Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmos", description="llmos: a multi-agent actor framework for LLM agents"
    )
    parser.add_argument("--version", action="version", version=f"llmos {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="a short multi-agent dialogue on the default model")
    _model_flags(demo, max_tokens=40)
    demo.add_argument("--turns", type=int, default=4, help="turns of the dialogue (default 4)")
    demo.add_argument("--question", default=None, help="what the agents discuss")
    demo.add_argument("--save", type=Path, default=None, help="folder for JSONL + Markdown")
    demo.set_defaults(run=_demo)

    chat = sub.add_parser("chat", help="talk to an agent at the terminal (/quit to end)")
    _model_flags(chat, max_tokens=96)
    chat.add_argument("--persona", default="You are a helpful, concise assistant.")
    chat.set_defaults(run=_chat)

    node = sub.add_parser("node", help="run a node until Ctrl+C", add_help=False)
    node.add_argument("node_args", nargs=argparse.REMAINDER)

    status = sub.add_parser("status", help="a table of a running node's actors")
    status.add_argument("address", help="the node's address, e.g. tcp://127.0.0.1:5555")
    status.add_argument("--timeout", type=float, default=5.0, help="seconds to wait")
    status.add_argument("--keys", default=None, help="this client's CURVE key pair file")
    status.add_argument("--server-key", default=None, help="the node's public CURVE key")
    status.set_defaults(run=_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``llmos`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["node"]:
        from ._node import run_node

        return run_node(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Command | None = getattr(args, "run", None)
    if run is None:
        parser.print_help()
        return 0
    if getattr(args, "question", "") is None:
        from ._demo import DEMO_QUESTION

        args.question = DEMO_QUESTION
    try:
        return run(args)
    except KeyboardInterrupt:
        print(f"llmos {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one clear line, not a traceback
        print(f"llmos {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
