"""The ``llmos`` subcommands that watch a running node: ``top`` and ``dashboard`` (and the
flags ``status`` shares with them). Each imports its view when it runs."""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Callable
from typing import Any

__all__ = ["add_view_parsers", "client_flags", "needs"]

Seconds = Callable[[str], float]


def needs(module: str, extra: str) -> None:
    """Check that an optional dependency is installed.

    Raises:
        ImportError: ``module`` is missing; the message names the ``llmos[extra]`` to install.
    """
    if importlib.util.find_spec(module) is None:
        raise ImportError(f"this command needs {module}: pip install 'llmos[{extra}]'")


def _top(args: argparse.Namespace) -> int:
    needs("rich", "top")
    from ._top import run_top

    return run_top(
        args.address,
        interval=args.interval,
        timeout=args.timeout,
        keys=args.keys,
        server_key=args.server_key,
        once=args.once,
    )


def _dashboard(args: argparse.Namespace) -> int:
    needs("starlette", "dashboard")
    needs("uvicorn", "dashboard")
    from ._dashboard import run_dashboard

    return run_dashboard(
        args.address,
        bind=args.bind,
        port=args.port,
        token=args.token,
        interval=args.interval,
        timeout=args.timeout,
        keys=args.keys,
        server_key=args.server_key,
    )


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535 (0: a free port), got {value}")
    return value


def client_flags(parser: argparse.ArgumentParser, seconds: Seconds) -> None:
    """ADDRESS, --timeout, --keys and --server-key: how a command reaches a node."""
    parser.add_argument("address", help="the node's address, e.g. tcp://127.0.0.1:5555")
    parser.add_argument("--timeout", type=seconds, default=5.0, help="seconds to wait (5)")
    parser.add_argument("--keys", default=None, help="this client's CURVE key pair file")
    parser.add_argument("--server-key", default=None, help="the node's public CURVE key")


def add_view_parsers(sub: Any, seconds: Seconds) -> None:
    """Add ``top`` and ``dashboard`` to the ``llmos`` command's subparsers.

    Args:
        sub: the subparsers.
        seconds: the argument type of a positive number of seconds.
    """
    top = sub.add_parser("top", help="a live view of a running node (q quits)")
    client_flags(top, seconds)
    top.add_argument("--interval", type=seconds, default=1.0, help="seconds between refreshes (1)")
    top.add_argument("--once", action="store_true", help="print one view and end")
    top.set_defaults(run=_top)

    dashboard = sub.add_parser("dashboard", help="a live web page of a running node")
    client_flags(dashboard, seconds)
    dashboard.add_argument(
        "--bind", default="127.0.0.1", help="host to serve on (127.0.0.1; others need --token)"
    )
    dashboard.add_argument("--port", type=_port, default=8765, help="port (8765; 0: a free one)")
    dashboard.add_argument("--token", default=None, help="required in every request's ?token=")
    dashboard.add_argument(
        "--interval", type=seconds, default=0.5, help="seconds between snapshots (0.5)"
    )
    dashboard.set_defaults(run=_dashboard)
