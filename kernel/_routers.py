"""Routers: which pool member gets a message. Plain classes, no threads of their own.

A router sees the pool's current members as a tuple of cells (replaced as a whole when the pool
changes, so reading it needs no lock) and picks one per message, in the sender's thread.

- :class:`RoundRobin`: each member in turn.
- :class:`LeastLoaded`: the member with the least work waiting or running (mailbox depth + in
  flight, the figures ``statistics()`` reports), ties broken in turn.
- :class:`ConsistentHash`: a key taken from the message picks the member, so one session always
  reaches the same member; when members come or go only ~1/n of the keys move.
- :class:`Broadcast`: every member gets every message (the pool ref handles the fan-out).
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import itertools
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from llmos.actors import MessageError
from llmos.actors.lowlevel import Cell
from llmos.kernel._errors import SupervisionError

__all__ = [
    "ROUTERS",
    "Broadcast",
    "ConsistentHash",
    "HashKey",
    "LeastLoaded",
    "RoundRobin",
    "Router",
    "RouterName",
    "make_router",
]

RouterName = Literal["round_robin", "least_loaded", "consistent_hash", "broadcast"]
HashKey = str | Callable[[Any], Any] | None
"""How ``consistent_hash`` finds a message's key: a field (or dict key) name, a function of the
message, or None for the default: the ``key`` field or dict key, else the message itself when it
is a str, bytes or int."""

ROUTERS: tuple[str, ...] = ("round_robin", "least_loaded", "consistent_hash", "broadcast")


class Router:
    """Base class: pick a member for a message."""

    name: ClassVar[str] = ""
    broadcast: ClassVar[bool] = False

    def update(self, cells: tuple[Cell, ...]) -> None:
        """The members changed (called under the pool's lock, before the new tuple is used)."""

    def select(self, msg: Any, cells: tuple[Cell, ...]) -> Cell:
        """The member for ``msg``; ``cells`` is never empty."""
        raise NotImplementedError


class RoundRobin(Router):
    name = "round_robin"

    def __init__(self) -> None:
        self._turn = itertools.count()

    def select(self, msg: Any, cells: tuple[Cell, ...]) -> Cell:
        return cells[next(self._turn) % len(cells)]


class LeastLoaded(Router):
    """The member with the least load: queued messages, the one being handled, and asks it
    took over with ``actor_defer_reply`` and has not answered yet. Ties go round robin."""

    name = "least_loaded"

    def __init__(self) -> None:
        self._turn = itertools.count()

    def select(self, msg: Any, cells: tuple[Cell, ...]) -> Cell:
        n = len(cells)
        start = next(self._turn) % n
        best = cells[start]
        best_load = best.mailbox.depth() + best.in_flight + best.deferred.count
        if best_load == 0:
            return best
        for i in range(1, n):
            cell = cells[(start + i) % n]
            load = cell.mailbox.depth() + cell.in_flight + cell.deferred.count
            if load < best_load:
                if load == 0:
                    return cell
                best, best_load = cell, load
        return best


def _hash(data: Any) -> int:
    raw = data if isinstance(data, bytes) else str(data).encode()
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big")


@functools.lru_cache(maxsize=8192)
def _key_hash(key: Any) -> int:
    """The hash of a routing key; sessions repeat their key, so it is usually cached."""
    return _hash(key)


class ConsistentHash(Router):
    """A hash ring with ``replicas`` points per member, keyed by member name.

    Args:
        key: how to find a message's key (see :data:`HashKey`).
        replicas: ring points per member (more: a more even spread).
    """

    name = "consistent_hash"

    def __init__(self, key: HashKey = None, replicas: int = 64) -> None:
        if key is not None and not isinstance(key, str) and not callable(key):
            raise SupervisionError(f"hash_key must be a field name, a function or None: {key!r}")
        self._key = key
        self._replicas = replicas
        self._ring: tuple[list[int], list[Cell]] = ([], [])

    def key_of(self, msg: Any) -> Any:
        """The routing key of ``msg``.

        Raises:
            MessageError: the message has no key this router can find.
        """
        key = self._key
        if callable(key):
            return key(msg)
        field = key or "key"
        if isinstance(msg, dict):
            found = msg.get(field)
        else:
            found = getattr(msg, field, None)
        if found is None and key is None and isinstance(msg, str | bytes | int):
            found = msg
        if found is None:
            raise MessageError(
                f"consistent_hash found no {field!r} in {type(msg).__name__} message; give it "
                "that field (or dict key), or pass hash_key= to spawn_pool"
            )
        return found

    def update(self, cells: tuple[Cell, ...]) -> None:
        points = sorted(
            (_hash(f"{cell.name}#{r}"), i)
            for i, cell in enumerate(cells)
            for r in range(self._replicas)
        )
        self._ring = ([h for h, _ in points], [cells[i] for _, i in points])

    def select(self, msg: Any, cells: tuple[Cell, ...]) -> Cell:
        hashes, owners = self._ring
        if not hashes:
            return cells[0]
        key = self.key_of(msg)
        point = _key_hash(key) if type(key) in (str, int, bytes) else _hash(key)
        return owners[bisect.bisect(hashes, point) % len(hashes)]


class Broadcast(Router):
    name = "broadcast"
    broadcast = True

    def select(self, msg: Any, cells: tuple[Cell, ...]) -> Cell:
        return cells[0]


def make_router(router: RouterName | Router, hash_key: HashKey = None) -> Router:
    """A router from its name (or the router itself).

    Raises:
        SupervisionError: unknown name.
    """
    if isinstance(router, Router):
        return router
    if router == "round_robin":
        return RoundRobin()
    if router == "least_loaded":
        return LeastLoaded()
    if router == "consistent_hash":
        return ConsistentHash(hash_key)
    if router == "broadcast":
        return Broadcast()
    raise SupervisionError(f"router must be one of {', '.join(ROUTERS)}, got {router!r}")
