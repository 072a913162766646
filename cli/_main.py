"""The ``llmos`` command: ``demo``, ``chat``, ``node``, ``status``, ``top``, ``dashboard``, the
recorded-run commands (``runs``, ``show``, ``resume``, ``replay``, ``effects``), ``cluster``,
``mcp serve`` and ``--version``.

Every argument is checked before anything loads. Errors print as one line naming the flag
(``llmos COMMAND: ErrorType: what happened``), never a traceback; Ctrl+C ends with exit code
130 and one line; a closed pipe (``llmos demo | head -1``) ends quietly.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._cluster import add_cluster_parser
from ._flags import flag_names
from ._views import add_view_parsers, client_flags
from ._views import needs as _needs

__all__ = ["build_parser", "flag_names", "main"]


def _version() -> str:
    try:
        return importlib.metadata.version("llmos")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive(text: str) -> float:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


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
        record=args.record,
    )


def _runs(args: argparse.Namespace) -> int:
    from ._runs import print_runs

    return print_runs(args.file)


def _show(args: argparse.Namespace) -> int:
    from ._runs import print_show

    return print_show(args.file, args.run_id)


def _resume(args: argparse.Namespace) -> int:
    from ._runs import print_resume

    return print_resume(args.file, args.run_id, args.timeout)


def _replay(args: argparse.Namespace) -> int:
    from ._runs import print_replay

    return print_replay(args.file, args.run_id, args.live, args.timeout)


def _effects(args: argparse.Namespace) -> int:
    from ._runs import print_effects

    return print_effects(args.file, args.run_id, args.done, args.redo, args.result)


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


def _mcp_serve(args: argparse.Namespace) -> int:
    _needs("mcp", "tools")
    from ._mcp import run_mcp_serve

    return run_mcp_serve(
        agents=args.agent,
        transport=args.transport,
        host=args.host,
        port=args.port,
        model=args.model,
        device=args.device,
        fake=args.fake,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        seed=args.seed,
    )


def _model_flags(parser: argparse.ArgumentParser, max_tokens: int) -> None:
    parser.add_argument(
        "--model",
        default=None,
        help="Hugging Face id, local directory or .gguf file "
        "(default: the embedded SmolLM2-135M-Instruct)",
    )
    parser.add_argument(
        "--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: auto"
    )
    parser.add_argument(
        "--max-tokens", type=_count, default=max_tokens, help=f"tokens per answer ({max_tokens})"
    )
    parser.add_argument(
        "--temperature",
        type=_non_negative,
        default=None,
        help="sampling temperature (default: the agents' own, 0.5); 0 = greedy",
    )
    parser.add_argument(
        "--seed",
        type=_seed,
        default=None,
        help="seed for sampling: the same seed replays the same text, another gives another",
    )
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
    demo.add_argument("--turns", type=_count, default=4, help="turns of the dialogue (default 4)")
    demo.add_argument("--question", default=None, help="what the agents discuss")
    demo.add_argument("--save", type=Path, default=None, help="folder for JSONL + Markdown")
    demo.add_argument(
        "--record", type=Path, default=None, help="record the run to this SQLite run log"
    )
    demo.set_defaults(run=_demo)

    chat = sub.add_parser("chat", help="talk to an agent at the terminal (/quit to end)")
    _model_flags(chat, max_tokens=96)
    chat.add_argument("--persona", default="You are a helpful, concise assistant.")
    chat.set_defaults(run=_chat)

    node = sub.add_parser("node", help="run a node until Ctrl+C", add_help=False)
    node.add_argument("node_args", nargs=argparse.REMAINDER)

    status = sub.add_parser("status", help="a table of a running node's actors")
    client_flags(status, _positive)
    status.set_defaults(run=_status)

    add_view_parsers(sub, _positive)
    _run_commands(sub)
    add_cluster_parser(sub)
    mcp = sub.add_parser("mcp", help="MCP: serve llmos agents to MCP hosts")
    mcp_sub = mcp.add_subparsers(dest="mcp_command", metavar="SUBCOMMAND", required=True)
    serve = mcp_sub.add_parser("serve", help="serve chat agents as MCP tools (ask_NAME)")
    _model_flags(serve, max_tokens=64)
    serve.add_argument(
        "--agent",
        action="append",
        default=[],
        metavar="NAME=PERSONA",
        help="an agent to serve (repeatable; default: one helpful assistant)",
    )
    serve.add_argument("--transport", choices=("stdio", "http"), default="stdio")
    serve.add_argument("--host", default="127.0.0.1", help="HTTP host (127.0.0.1)")
    serve.add_argument("--port", type=_count, default=8000, help="HTTP port (8000)")
    serve.set_defaults(run=_mcp_serve)
    return parser


def _run_commands(sub: Any) -> None:
    """The commands that read and drive recorded runs."""
    runs = sub.add_parser("runs", help="list the runs of a run log")
    runs.add_argument("file", type=Path, help="the run log (SQLite file)")
    runs.set_defaults(run=_runs)

    show = sub.add_parser("show", help="a recorded run's transcript, tokens and timing per turn")
    show.add_argument("file", type=Path, help="the run log (SQLite file)")
    show.add_argument("run_id")
    show.set_defaults(run=_show)

    resume = sub.add_parser("resume", help="resume a recorded run from its last completed turn")
    resume.add_argument("file", type=Path, help="the run log (SQLite file)")
    resume.add_argument("run_id")
    resume.add_argument("--timeout", type=_positive, default=900.0, help="seconds (900)")
    resume.set_defaults(run=_resume)

    replay = sub.add_parser("replay", help="re-execute a recorded run from its log")
    replay.add_argument("file", type=Path, help="the run log (SQLite file)")
    replay.add_argument("run_id")
    replay.add_argument(
        "--live", action="store_true", help="run the model again; report where it diverges"
    )
    replay.add_argument("--timeout", type=_positive, default=900.0, help="seconds (900)")
    replay.set_defaults(run=_replay)

    effects = sub.add_parser("effects", help="a run's side effects; decide one in doubt")
    effects.add_argument("file", type=Path, help="the run log (SQLite file)")
    effects.add_argument("run_id")
    decide = effects.add_mutually_exclusive_group()
    decide.add_argument("--done", metavar="KEY", help="the effect took place")
    decide.add_argument("--redo", metavar="KEY", help="it did not: run it again on resume")
    effects.add_argument("--result", help="with --done: its result, as JSON")
    effects.set_defaults(run=_effects)


def _check(args: argparse.Namespace) -> None:
    """What argparse cannot check alone, before anything is loaded (fast: no torch)."""
    if getattr(args, "question", "") is None:
        from ._demo import DEMO_QUESTION

        args.question = DEMO_QUESTION
    if getattr(args, "question", None) is not None and not args.question.strip():
        raise ValueError("--question is empty; give the agents something to discuss")
    for spec in getattr(args, "agent", None) or []:
        from ._mcp import parse_agent

        parse_agent(spec)
    if getattr(args, "fake", True) is False:
        from llmos.models._source import check_model_source

        check_model_source(args.model)


def _quiet_interrupt(command: str, console: bool) -> int:
    # Whatever the threads still winding down would log is noise after Ctrl+C.
    logging.disable(logging.CRITICAL)
    print(f"llmos {command}: interrupted", file=sys.stderr, flush=True)
    if console:
        # Run as the command: end now. Waiting for a model thread mid forward pass, or for
        # interpreter teardown, would keep the person waiting for seconds after Ctrl+C.
        sys.stdout.flush()
        os._exit(130)
    return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``llmos`` console script; returns the exit code.

    With ``LLMOS_TRACING`` set (``otlp``, ``console`` or ``jsonl:PATH``), every command runs
    with tracing on (see :mod:`llmos.actors.tracing`); its spans are flushed on the way out.
    """
    if not os.environ.get("LLMOS_TRACING"):
        return _main(argv)  # the usual case: nothing imported for tracing
    from llmos.actors import LlmosError, tracing

    try:
        traced = tracing.enable_from_env()
    except LlmosError as exc:
        print(f"llmos: {tracing.ENV_VAR}: {exc}", file=sys.stderr)
        return 2
    try:
        return _main(argv)
    finally:
        if traced:
            tracing.disable()


def _main(argv: Sequence[str] | None) -> int:
    console = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if console and hasattr(signal, "SIGPIPE") and argv[:1] != ["node"]:
        # ``llmos demo | head -1``: a closed pipe ends the process quietly, as for any tool.
        # Only as the command: ``main([...])`` called from a program must not change how that
        # whole process takes a broken pipe (it would die writing to any closed pipe later).
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if argv[:1] == ["node"]:
        from ._node import run_node

        try:
            return run_node(argv[1:])
        except KeyboardInterrupt:
            return _quiet_interrupt("node", console)
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Command | None = getattr(args, "run", None)
    if run is None:
        parser.print_help()
        return 0
    try:
        _check(args)
        return run(args)
    except KeyboardInterrupt:
        return _quiet_interrupt(args.command, console)
    except Exception as exc:  # one clear line, not a traceback
        text = " ".join(flag_names(str(exc)).split())
        print(f"llmos {args.command}: {type(exc).__name__}: {text}", file=sys.stderr)
        return 1
