"""ClusterRef: a ref to an actor on a cluster node named by its node's name, which follows that
node to its new address after Ray restarts it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from llmos.actors import ActorRef, ActorStats, Reply, default_ask_timeout
from llmos.transport import Node, NodeUnreachable, RemoteRef

from ._errors import ClusterError
from ._ray import import_ray

__all__ = ["ClusterRef"]

T = TypeVar("T")
_UNSURE = (None, "down")  # peer states in which the node may have moved


class ClusterRef(ActorRef):
    """The actor named ``name`` on the llmos node named ``node_name`` (get one with
    :meth:`Cluster.ref` or :meth:`Cluster.lookup`).

    It carries its messages as a :class:`~llmos.transport.RemoteRef` to the node's address
    (:attr:`node`). Ray restarts a node whose process died at a new address; this ref asks Ray
    (the node's named Ray actor) for that address and goes there. Failure contract, beyond a
    RemoteRef's:

    - an ask that left for the node and was lost with it fails with
      :class:`~llmos.transport.NodeUnreachable`, as with a RemoteRef; it is never resent (its
      handler may have run);
    - an ask, tell or ``statistics()`` that finds the node's address down (the carrying
      node's heartbeats lost it, or an earlier ask failed with NodeUnreachable) never leaves
      for it: the ref asks Ray for the node's address first (waiting up to ``resolve_wait``
      the first time), and sends to the new address once Ray has restarted the node (also
      when the address was forgotten while idle: then it costs one question to Ray);
    - while Ray has not restarted it yet, such an ask raises NodeUnreachable at once and such
      a tell goes to dead letters; :meth:`wait_up` waits for the node to come back.

    Two ClusterRefs are equal when they name the same actor on the same node name.

    Args:
        local: the node that carries the messages (a driver's, or the node this runs on).
        name: the actor's name on the node.
        node_name: the llmos node's name in the cluster.
        host: the node's Ray actor handle (it answers ``address()``).
        address: the node's address now.
        resolve_wait: seconds an ask waits for Ray's answer when it first finds the node down.
    """

    __slots__ = (
        "_lock",
        "_probe",
        "_ref",
        "followed",
        "host",
        "local",
        "node_name",
        "ray",
        "resolve_wait",
    )

    def __init__(
        self,
        local: Node,
        name: str,
        node_name: str,
        host: Any,
        address: str,
        *,
        resolve_wait: float = 0.5,
    ) -> None:
        super().__init__(name, address)
        self.ray: Any = import_ray()
        self.local = local
        self.node_name = node_name
        self.host = host
        self.resolve_wait = resolve_wait
        self.followed = 0
        """How many times the ref moved to a new address of its node."""
        self._ref: RemoteRef = local.remote_ref(name, address)
        self._probe: Any = None  # a Ray ObjectRef for the node's address, while it is down
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<ClusterRef {self.name} on node {self.node_name} at {self.node}>"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ClusterRef)
            and other.name == self.name
            and other.node_name == self.node_name
        )

    def __hash__(self) -> int:
        return hash((self.name, self.node_name))

    # -- following the node ----------------------------------------------------------------------

    def follow(self, wait: float = 0.0) -> bool:
        """If the node's address is down (or unknown to the carrying node: never used, or
        forgotten while idle), ask Ray where the node is now (waiting up to ``wait`` seconds
        for the answer) and move there; True if the ref moved.

        A question to Ray stays pending while Ray restarts the node; a later call reads its
        answer.
        """
        return self._follow(wait, wait)

    def _follow(self, wait: float, wait_pending: float) -> bool:
        """:meth:`follow`, waiting ``wait`` for a new question to Ray and ``wait_pending`` for
        one asked before (an ask waits once, then fails fast while Ray restarts the node)."""
        with self._lock:
            current = self._ref
            if self.local.peer_state(current.node or "") not in _UNSURE:
                return False
            fresh = self._probe is None
            if fresh:
                self._probe = self.host.address.remote()
            ready, _ = self.ray.wait([self._probe], timeout=wait if fresh else wait_pending)
            if not ready:
                return False
            probe, self._probe = self._probe, None
            try:
                address = str(self.ray.get(probe))
            except Exception:  # stopped for good, or died again: ask again next time
                return False
            if address == current.node:  # not restarted (yet): Ray still knows the old process
                return False
            self._ref = self.local.remote_ref(self.name, address)
            self.node = address
            self.followed += 1
            return True

    def wait_up(self, timeout: float = 60.0) -> str:
        """Wait until the node answers heartbeats at its current address (following it to a
        new one if Ray restarts it); return that address.

        Raises:
            ClusterError: it did not within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ClusterError(
                    f"llmos node {self.node_name!r} did not come back within {timeout:.3g} s"
                )
            self.follow(wait=min(left, 1.0))
            address = self._ref.node or ""
            try:
                self.local.connect(address, timeout=max(min(left, 1.0), 0.01))
            except NodeUnreachable:
                continue
            return address

    def _again(self, call: Callable[[RemoteRef], T]) -> T:
        """``call`` on the current ref; once more at the node's new address when it raised
        NodeUnreachable and Ray has moved the node (only for calls safe to repeat)."""
        try:
            return call(self._ref)
        except NodeUnreachable:
            if not self._follow(self.resolve_wait, 0.0):
                raise
        return call(self._ref)

    # -- the ActorRef interface -------------------------------------------------------------------

    def tell(self, message: Any) -> None:
        """Send to the node's current address (following it first if the old one is down); a
        tell that finds the node down goes to dead letters, as with a RemoteRef."""
        self._follow(self.resolve_wait, 0.0)
        self._ref.tell(message)

    def ask(self, message: Any, timeout: float | None = None) -> Reply[Any]:
        """Ask the actor at the node's current address (see the class for what is resent).

        Raises:
            NodeUnreachable: the node is down and Ray has not restarted it yet (at once).
        """
        span = default_ask_timeout() if timeout is None else timeout
        started = time.monotonic()
        if self.local.peer_state(self._ref.node or "") in _UNSURE:
            self._follow(self.resolve_wait, 0.0)
        try:
            return self._ref.ask(message, span)
        except NodeUnreachable:  # raised before anything left: safe to send to a new address
            if not self._follow(self.resolve_wait, 0.0):
                raise
        return self._ref.ask(message, max(span - (time.monotonic() - started), 1e-3))

    async def ask_async(self, message: Any, timeout: float | None = None) -> Any:
        """:meth:`ask` for asyncio; asking Ray for a new address happens off the event loop."""
        if self.local.peer_state(self._ref.node or "") in _UNSURE:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, self._follow, self.resolve_wait, 0.0)
        return await self._ref.ask_async(message, timeout)

    def is_alive(self) -> bool:
        """True when the actor runs at the node's current address (following it first)."""
        self._follow(self.resolve_wait, 0.0)
        return self._ref.is_alive()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop the actor on its node (see :meth:`RemoteRef.stop`)."""
        return self._again(lambda ref: ref.stop(timeout))

    def statistics(self) -> ActorStats:
        """The actor's counters, from its node (following the node if it moved)."""
        return self._again(lambda ref: ref.statistics())

    def watch(self, watcher: ActorRef) -> None:
        """Have ``watcher`` receive ``Terminated`` when the actor stops or its node is lost
        (a watch is on the node's current address and does not follow a restart)."""
        self._ref.watch(watcher)

    def unwatch(self, watcher: ActorRef) -> None:
        self._ref.unwatch(watcher)
