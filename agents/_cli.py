"""The ``llmos`` command: ``llmos --version``, ``llmos demo``, ``llmos node``, ``llmos status``."""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections.abc import Callable, Sequence

__all__ = ["main"]


def _version() -> str:
    try:
        return importlib.metadata.version("llmos")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def _demo_actors(args: argparse.Namespace) -> int:
    from llmos.agents._demo_actors import run

    return run(rallies=args.turns)


Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmos", description="llmos: a multi-agent actor framework for LLM agents"
    )
    parser.add_argument("--version", action="version", version=f"llmos {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="run the main demo")
    demo.add_argument("--turns", type=int, default=6, help="turns of the dialogue")
    demo.set_defaults(run=_demo_actors)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``llmos`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Command | None = getattr(args, "run", None)
    if run is None:
        parser.print_help()
        return 0
    try:
        return run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one clear line, not a traceback
        print(f"llmos {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
