"""What ``llmos top``, ``llmos dashboard`` and the metrics read: a snapshot of one node.

:func:`node_snapshot` gathers, as plain data, the node's supervision tree (every actor with its
parent, state, mailbox, counters), its pools, its transport counters and peers, its model
actors (batches, tokens, queue) and token ledger, and the running chats' transcripts. The
:class:`Observer` actor (``llmos.observer``, started by ``llmos node``) answers
:class:`NodeSnapshot` with it, so another process reads a node through the transport with an
ordinary ask: read-only, as any peer may ask any actor, and never stopped from the wire (a
system actor). :class:`NodeWatcher` is that other process's side.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from llmos.actors import Actor, ActorError, ActorRef, handler, message, message_fields, running
from llmos.actors.lowlevel import Cell
from llmos.agents import ChatResult, GetStatus
from llmos.kernel import KERNEL_NAME, Supervisor, kernel
from llmos.models import GetModelStats, ModelStats
from llmos.transport import Node

__all__ = ["OBSERVER_NAME", "NodeSnapshot", "NodeWatcher", "Observer", "node_snapshot"]

log = logging.getLogger("llmos.cli")

OBSERVER_NAME = "llmos.observer"
"""The actor name of a node's :class:`Observer`."""

_ASK_TIMEOUT = 2.0  # a model actor mid-step or a chat mid-turn answers between messages
_MAX_ENTRIES = 200  # transcript entries per chat in one snapshot (the newest)


@message("llmos.cli.NodeSnapshot")
class NodeSnapshot:
    """Ask a node's ``llmos.observer`` for :func:`node_snapshot` (a plain-data dict)."""


_MODELS = ("ModelActor", "FakeModel")
_CHATS = ("GroupChat", "Dialogue")


def _is_a(instance: object, module: str, names: tuple[str, ...]) -> bool:
    # By name along the class's bases: testing isinstance(.., ModelActor) would import torch
    # into a node that runs no model.
    return any(
        c.__name__ in names and c.__module__.startswith(module) for c in type(instance).__mro__
    )


def _role(cell: Cell) -> str:
    """ "model", "chat" or "" for a cell of the kernel's tree."""
    if _is_a(cell.instance, "llmos.models", _MODELS):
        return "model"
    if _is_a(cell.instance, "llmos.agents", _CHATS):
        return "chat"
    return ""


def _actor_row(cell: Cell, parent: str, depth: int) -> dict[str, Any]:
    stats = cell.statistics()
    instance = cell.instance
    kind = "actor"
    if _is_a(instance, "llmos.kernel", ("Pool",)):
        kind = "pool"
    elif isinstance(instance, Supervisor):
        kind = "supervisor"
    return {
        "name": stats.name,
        "class": stats.class_name,
        "kind": kind,
        "parent": parent,
        "depth": depth,
        "state": stats.state,
        "mailbox": stats.mailbox_depth,
        "in_flight": stats.in_flight,
        "processed": stats.processed,
        "failed": stats.failed,
        "restarts": stats.restarts,
        "busy": stats.busy_seconds,
        "load": stats.load,
        "mean_latency": stats.mean_latency,
        "last_latency": stats.last_latency,
        "ask_latency": list(stats.ask_latency_counts),
        "ask_seconds": stats.ask_latency_sum,
    }


def _tree() -> tuple[list[dict[str, Any]], list[tuple[str, ActorRef]]]:
    """Every actor, depth first from the kernel, then those outside its tree; and the model
    actors and chats among them, as (role, ref)."""
    root = kernel()
    rows = [_actor_row(root.actor_cell, "", 0)]
    found: list[tuple[str, ActorRef]] = []
    todo: list[tuple[Supervisor, int]] = [(root, 1)]
    while todo:
        sup, depth = todo.pop()
        children = sup.child_cells()
        at = next(i for i, row in enumerate(rows) if row["name"] == sup.actor_name) + 1
        for cell in children:
            rows.insert(at, _actor_row(cell, sup.actor_name, depth))
            role = _role(cell) if cell.state == "running" and not cell.stopped else ""
            if role:
                found.append((role, cell.ref))
            at += 1
            inner = cell.instance
            if isinstance(inner, Supervisor) and not cell.stopped:
                todo.append((inner, depth + 1))
    seen = {row["name"] for row in rows}
    for ref in running():
        if ref.name not in seen:
            stats = ref.statistics()
            # Outside the tree only the class's own name is known.
            if stats.state == "running" and stats.class_name in _MODELS:
                found.append(("model", ref))
            elif stats.state == "running" and stats.class_name in _CHATS:
                found.append(("chat", ref))
            rows.append(
                {
                    "name": stats.name,
                    "class": stats.class_name,
                    "kind": "actor",
                    "parent": "",
                    "depth": 0,
                    "state": stats.state,
                    "mailbox": stats.mailbox_depth,
                    "in_flight": stats.in_flight,
                    "processed": stats.processed,
                    "failed": stats.failed,
                    "restarts": stats.restarts,
                    "busy": stats.busy_seconds,
                    "load": stats.load,
                    "mean_latency": stats.mean_latency,
                    "last_latency": stats.last_latency,
                    "ask_latency": list(stats.ask_latency_counts),
                    "ask_seconds": stats.ask_latency_sum,
                }
            )
    return rows, found


def _model_row(name: str, stats: ModelStats) -> dict[str, Any]:
    row = {k: v for k, v in message_fields(stats).items() if k != "tokens_by_requester"}
    seconds = stats.generation_seconds
    row["actor"] = name
    row["tokens_per_second"] = stats.tokens_generated / seconds if seconds > 0 else 0.0
    return row


def _chat_row(name: str, result: ChatResult) -> dict[str, Any]:
    entries = [entry.as_dict() for entry in result.transcript[-_MAX_ENTRIES:]]
    return {
        "name": name,
        "dialogue": result.dialogue,
        "task": result.task,
        "running": result.stopped_by == "",
        "stopped_by": result.stopped_by,
        "turns": result.turns,
        "participants": list(result.participants),
        "entries": entries,
    }


def node_snapshot(node: Node | None = None) -> dict[str, Any]:
    """A plain-data snapshot of this process's node (see the module's docstring).

    Args:
        node: the transport node whose counters and peers to include (None: left out).

    Returns:
        A dict with ``at``, ``node``, ``kernel``, ``actors`` (tree order, each with its
        ``parent`` and ``depth``), ``pools``, ``transport``, ``models``, ``tokens`` and
        ``chats``; a model actor or chat that did not answer in time is left out and named in
        ``missing``.
    """
    stats = kernel().stats()
    rows, found = _tree()
    models: list[dict[str, Any]] = []
    chats: list[dict[str, Any]] = []
    missing: list[str] = []
    asks: list[tuple[str, str, Any]] = []
    for kind, ref in found:
        try:
            question = GetModelStats() if kind == "model" else GetStatus()
            asks.append((kind, ref.name, ref.ask(question, timeout=_ASK_TIMEOUT)))
        except ActorError:  # it stopped since the tree was read
            missing.append(ref.name)
    for kind, name, reply in asks:
        try:
            answer = reply.get()
        except ActorError as exc:
            log.debug("%s did not answer the snapshot: %r", name, exc)
            missing.append(name)
            continue
        if kind == "model" and isinstance(answer, ModelStats):
            models.append(_model_row(name, answer))
        elif kind == "chat" and isinstance(answer, ChatResult):
            chats.append(_chat_row(name, answer))
    pools = [
        {
            "name": p.name,
            "router": p.router,
            "size": p.size,
            "min_size": p.min_size,
            "max_size": p.max_size,
            "members": [m.name for m in p.members],
            "mailbox": p.mailbox_depth,
            "in_flight": p.in_flight,
            "processed": p.processed,
            "failed": p.failed,
            "restarts": p.restarts,
            "utilisation": p.utilisation,
            "load_balance_efficiency": p.load_balance_efficiency,
        }
        for p in stats.pools
    ]
    transport = dataclasses.asdict(node.statistics()) if node is not None else None
    return {
        "at": time.time(),
        "node": {"address": node.address, "name": node.name} if node is not None else None,
        "kernel": {
            "name": KERNEL_NAME,
            "processed": stats.processed,
            "failed": stats.failed,
            "restarts": stats.restarts,
            "ask_failures": stats.ask_failures,
            "gave_up": stats.gave_up,
            "dead_letters": stats.dead_letters,
        },
        "actors": rows,
        "pools": pools,
        "transport": transport,
        "models": models,
        "tokens": stats.tokens.as_dict(),
        "chats": chats,
        "missing": missing,
    }


class Observer(Actor):
    """``llmos.observer``: answers :class:`NodeSnapshot` with :func:`node_snapshot`.

    A system actor: peers may ask it, never stop it. Start it with :meth:`start_for`.

    Args:
        node: the transport node whose counters to report (None: none).
    """

    actor_system = True

    def __init__(self, node: Node | None = None) -> None:
        super().__init__()
        self.node = node

    @classmethod
    def start_for(cls, node: Node | None) -> ActorRef:
        """Start this process's observer (named ``llmos.observer``) and return its ref."""
        return cls.start(node, name=OBSERVER_NAME)

    @handler(NodeSnapshot)
    def snapshot(self, _msg: NodeSnapshot) -> dict[str, Any]:
        """The node's snapshot."""
        return node_snapshot(self.node)


class NodeWatcher:
    """Reads snapshots of the node at ``address`` from another process (one client node).

    Args:
        address: the node's address, e.g. ``tcp://127.0.0.1:5555``.
        timeout: seconds to wait for the connection and for each snapshot.
        keys, server_key: this client's CURVE key pair file and the node's public key.

    Raises:
        NodeUnreachable: the node did not answer within ``timeout``. ActorDeadError: it runs no
            observer (start the node with ``llmos node``, or ``Observer.start_for(node)``).
    """

    def __init__(
        self,
        address: str,
        timeout: float = 5.0,
        keys: str | None = None,
        server_key: str | None = None,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.client = Node(
            keys=keys,
            peer_keys={address: server_key} if server_key else None,
            name="llmos-watch",
            heartbeat=2 * timeout + 1,
        )
        try:
            self.client.connect(address, timeout=timeout)
            self.observer = self.client.lookup(OBSERVER_NAME, node=address, timeout=timeout)
        except BaseException:
            self.client.close()
            raise

    def snapshot(self) -> dict[str, Any]:
        """The node's snapshot now.

        Raises:
            AskTimeout, NodeUnreachable: the node did not answer within the timeout.
        """
        answer: dict[str, Any] = self.observer.ask(NodeSnapshot(), timeout=self.timeout).get()
        return answer

    def close(self) -> None:
        """Close the client node."""
        self.client.close()

    def __enter__(self) -> NodeWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
