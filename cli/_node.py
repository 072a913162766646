"""``llmos node``: a node whose kernel supervises what remote peers spawn on it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from llmos.transport import Node

__all__ = ["run_node"]


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (needs llmos[metrics])",
    )
    parser.add_argument(
        "--metrics-token",
        metavar="TOKEN",
        default=None,
        help="scrapes must send 'Authorization: Bearer TOKEN' (needed when --metrics is not "
        "on loopback)",
    )


def _services(node: Node, args: argparse.Namespace) -> Callable[[], None]:
    """The observer (what ``llmos top`` and ``llmos dashboard`` read) and the metrics."""
    from ._observe import Observer

    Observer.start_for(node)
    if args.metrics is None:
        return lambda: None
    from ._metrics import serve_metrics

    server = serve_metrics(args.metrics, node=node, token=args.metrics_token)
    print(f"llmos node: metrics at {server.url}", file=sys.stderr, flush=True)
    return server.close


def run_node(argv: list[str]) -> int:
    """Run ``llmos node`` (see ``llmos node --help``); returns the exit code.

    The node's kernel starts first: it supervises every actor that peers spawn here (by import
    path, from the ``--allow-spawn`` list), and answers ``llmos status``; its observer answers
    ``llmos top`` and ``llmos dashboard``; ``--metrics HOST:PORT`` serves Prometheus metrics.
    """
    from llmos.kernel import kernel
    from llmos.transport import node_main

    return node_main(argv, spawner=kernel().spawner, flags=_flags, on_start=_services)
