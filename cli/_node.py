"""``llmos node``: run a node until Ctrl+C (SIGINT) or SIGTERM.

The node's kernel starts first: it supervises every actor that peers spawn here (by import path,
from the ``--allow-spawn`` list) and answers ``llmos status``; the node's ``llmos.node`` service
answers ``"statistics"``; its observer answers ``llmos top`` and ``llmos dashboard``; and
``--metrics HOST:PORT`` serves Prometheus metrics.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from llmos.actors import Actor, LlmosError, stop_all
from llmos.transport import Node, Quotas, generate_keys

from ._flags import flag_names

__all__ = ["NODE_SERVICE", "NodeService", "build_parser", "run_node"]

NODE_SERVICE = "llmos.node"
_QUOTAS = Quotas()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``llmos node``."""
    parser = argparse.ArgumentParser(
        prog="llmos node",
        description="Run an llmos node: print its address, serve until Ctrl+C or SIGTERM.",
    )
    parser.add_argument(
        "--bind",
        default="tcp://127.0.0.1:0",
        help="address to listen on (default: a free port on 127.0.0.1)",
    )
    parser.add_argument("--name", help="the node's name in logs")
    parser.add_argument(
        "--keys", metavar="DIR", help="folder (or .key_secret file) with this node's CURVE key pair"
    )
    parser.add_argument(
        "--allow-key",
        action="append",
        default=[],
        metavar="KEY",
        help="a client public key (Z85, .key file, or folder) to let in; repeat; write "
        "--allow-key=KEY for a Z85 key that starts with -",
    )
    parser.add_argument(
        "--peer-key",
        action="append",
        default=[],
        metavar="ADDRESS=KEY",
        help="the CURVE public key of a peer this node connects to; repeat",
    )
    parser.add_argument(
        "--allow-spawn",
        action="append",
        default=[],
        metavar="PKG.MOD:CLASS",
        help="a class peers may spawn here ('pkg.mod:*' for a module); repeat",
    )
    parser.add_argument(
        "--remote-stop",
        choices=("spawned", "any", "none"),
        default="spawned",
        help="which actors a peer may stop here: those it spawned (default), any, or none; "
        "system actors (the kernel, supervisors, pools) never",
    )
    parser.add_argument(
        "--max-peers",
        type=int,
        default=_QUOTAS.max_peers,
        metavar="N",
        help=f"most peer nodes this node connects to at a time (default {_QUOTAS.max_peers})",
    )
    parser.add_argument(
        "--max-spawned",
        type=int,
        default=_QUOTAS.max_spawned,
        metavar="N",
        help=f"most live actors one peer may spawn here (default {_QUOTAS.max_spawned})",
    )
    parser.add_argument(
        "--max-pending",
        type=int,
        default=_QUOTAS.max_pending,
        metavar="N",
        help=f"most requests of one peer in progress here (default {_QUOTAS.max_pending})",
    )
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module at start (its message classes and actors); repeat",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="allow binding off loopback without CURVE keys (trusted networks)",
    )
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=3.0,
        metavar="SECONDS",
        help="mark a silent peer down after this long (default 3)",
    )
    parser.add_argument(
        "--advertise",
        metavar="ADDRESS",
        help="the address other nodes should use to reach this one",
    )
    parser.add_argument(
        "--gen-keys",
        metavar="DIR",
        help="write a new key pair (node.key, node.key_secret) to DIR and exit",
    )
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
    return parser


def run_node(argv: list[str] | None = None) -> int:
    """Run ``llmos node`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    Prints the node's address on one line (flushed) once it listens, serves until SIGINT or
    SIGTERM, then closes the node and stops every actor. Exit codes: 0 after a clean shutdown,
    2 for bad arguments or a node that cannot start.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.gen_keys:
        try:
            keys = generate_keys(args.gen_keys)
        except LlmosError as exc:
            print(f"llmos node: {exc}", file=sys.stderr)
            return 2
        print(
            f"wrote {args.gen_keys}/node.key and node.key_secret; public key: "
            f"{keys.public.decode()}",
            flush=True,
        )
        return 0
    try:
        node = _start(args)
    except (LlmosError, ImportError) as exc:
        print(f"llmos node: {_flags_of(exc)}", file=sys.stderr)
        return 2
    NodeService.start(node, name=NODE_SERVICE)
    try:
        stop_services = _services(node, args)
    except (LlmosError, OSError) as exc:
        print(f"llmos node: {_flags_of(exc)}", file=sys.stderr)
        node.close()
        stop_all(timeout=10.0)
        return 2
    stop = threading.Event()
    restore = _on_signals(stop)
    try:
        print(node.address, flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        for signum, previous in restore.items():
            signal.signal(signum, previous)
        stop_services()
        node.close()
        try:
            stop_all(timeout=10.0)
        except LlmosError as exc:
            print(f"llmos node: {exc}", file=sys.stderr)
    return 0


def _start(args: argparse.Namespace) -> Node:
    """The node the arguments describe, its kernel spawning what peers ask for."""
    from llmos.kernel import kernel

    for module in args.imports:
        importlib.import_module(module)
    for spec in args.allow_spawn:
        _check_spawnable(spec)
    peer_keys = {}
    for spec in args.peer_key:
        address, sep, key = spec.rpartition("=")
        if not sep or not address:
            raise LlmosError(f"--peer-key takes ADDRESS=KEY, got {spec!r}")
        peer_keys[address] = key
    return Node(
        args.bind,
        name=args.name,
        keys=args.keys,
        allow_keys=args.allow_key,
        peer_keys=peer_keys,
        allow_spawn=args.allow_spawn,
        remote_stop=args.remote_stop,
        quotas=Quotas(
            max_peers=args.max_peers,
            max_spawned=args.max_spawned,
            max_pending=args.max_pending,
        ),
        insecure=args.insecure,
        heartbeat=args.heartbeat,
        advertise=args.advertise,
        spawner=kernel().spawner,
    )


def _services(node: Node, args: argparse.Namespace) -> Callable[[], None]:
    """The observer (what ``llmos top`` and ``llmos dashboard`` read) and the metrics; returns
    what stops them."""
    from ._observe import Observer

    Observer.start_for(node)
    if args.metrics is None:
        return lambda: None
    from ._metrics import serve_metrics

    server = serve_metrics(args.metrics, node=node, token=args.metrics_token)
    print(f"llmos node: metrics at {server.url}", file=sys.stderr, flush=True)
    return server.close


def _flags_of(exc: BaseException) -> str:
    # The Node's errors name its Python arguments; here the user typed flags.
    return flag_names(str(exc)).replace("(see generate_keys)", "(make a pair with --gen-keys DIR)")


class NodeService(Actor):  # type: ignore[misc,unused-ignore]
    """``llmos.node``: answers ``"statistics"`` with its node's :class:`NodeStats` as a dict.

    A system actor (no peer may stop it); ``llmos node`` starts one.
    """

    actor_system = True

    def __init__(self, node: Node) -> None:
        super().__init__()
        self.node = node

    def on_receive(self, message: Any) -> Any:
        if message == "statistics":
            return dataclasses.asdict(self.node.statistics())
        raise LlmosError(f"llmos.node answers 'statistics' only, not {message!r}")


def _check_spawnable(spec: str) -> None:
    """Check an ``--allow-spawn`` entry at start: its module imports and has the class.

    Raises:
        LlmosError: the entry is malformed, its module does not import, or lacks the class.
    """
    module_name, sep, class_name = spec.partition(":")
    if not sep or not module_name or not class_name:
        raise LlmosError(f"--allow-spawn takes PKG.MOD:CLASS or PKG.MOD:*, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise LlmosError(
            f"--allow-spawn {spec}: cannot import {module_name} ({type(exc).__name__}: {exc}); "
            "the node imports it from its own Python path: install its package, or start the "
            "node with PYTHONPATH=FOLDER (PYTHONPATH=. for a module in the current directory)"
        ) from exc
    if class_name != "*" and not isinstance(getattr(module, class_name, None), type):
        raise LlmosError(
            f"--allow-spawn {spec}: module {module_name} ({module.__file__}) has no class "
            f"{class_name}; check the name"
        )


def _on_signals(stop: threading.Event) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[int, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, handle)
    return previous
