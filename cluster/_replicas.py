"""Replicas: one ref over the same-named actor on several cluster nodes, least-loaded, that
routes around a node that went down and uses it again once Ray has restarted it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import itertools
import threading
import time
from collections.abc import Mapping
from typing import Any

from llmos.actors import ActorRef, ActorStats, Reply, default_ask_timeout
from llmos.transport import Node, NodeUnreachable

from ._errors import ClusterError
from ._ray import import_ray
from ._ref import ClusterRef

__all__ = ["ReplicaStats", "Replicas"]


@dataclasses.dataclass(frozen=True)
class ReplicaStats:
    """One replica as the pool sees it.

    Attributes:
        node: the node's name. address: its address now. up: the pool routes to it.
        in_flight: asks sent there and not answered. served: asks it answered.
        lost: times it was found down. revived: times it came back (Ray restarted it).
    """

    node: str
    address: str
    up: bool
    in_flight: int
    served: int
    lost: int
    revived: int


class _Replica:
    __slots__ = ("in_flight", "lost", "ref", "revived", "served", "up")

    def __init__(self, ref: ClusterRef) -> None:
        self.ref = ref  # finds the node's new address through Ray, never waiting for it
        self.up = True
        self.in_flight = self.served = self.lost = self.revived = 0

    @property
    def node(self) -> str:
        return self.ref.node_name

    def stats(self) -> ReplicaStats:
        return ReplicaStats(
            self.node,
            self.ref.node or "",
            self.up,
            self.in_flight,
            self.served,
            self.lost,
            self.revived,
        )


class Replicas(ActorRef):
    """The actors named ``actor`` on several llmos nodes, behind one ref (get one with
    :meth:`Cluster.replicas`).

    Each ask goes to the replica with the fewest asks in flight from this ref (ties in turn),
    over the llmos transport. A replica is taken out of the rotation when an ask there fails
    with :class:`~llmos.transport.NodeUnreachable` or the driver's heartbeats mark its node
    down. **Retry:** such an ask is sent once more, to another replica, within the same
    deadline; so a request whose node died after handling it but before answering runs twice
    (at least once, never silently lost). A second NodeUnreachable goes back to the asker, as
    does every other error (the pool never retries a handler's own error). Each replica is a
    :class:`ClusterRef`: while it is down the pool asks Ray for its node's address; Ray
    answers once it has restarted the node (its boot actors are then running again), and the
    replica rejoins at its new address (or at its old one, if the node answers there again).

    ``stop()`` closes this ref only: the actors belong to their nodes (``Cluster.down``).

    Args:
        local: the driver's node, which carries the asks.
        actor: the actors' name on each node.
        hosts: node name -> the node's Ray actor handle.
        retries: how many times an ask lost with its node is sent again (default 1).
        timeout: seconds to wait for each node's address at start.
    """

    def __init__(
        self,
        local: Node,
        actor: str,
        hosts: Mapping[str, Any],
        *,
        retries: int = 1,
        timeout: float = 30.0,
    ) -> None:
        super().__init__(actor, None)
        self.ray: Any = import_ray()
        self.local = local
        self.retries = retries
        self.retried = 0
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self._closed = False
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        names = list(hosts)
        addresses = self.ray.get([hosts[n].address.remote() for n in names], timeout=timeout)
        self._replicas = [
            _Replica(ClusterRef(local, actor, n, hosts[n], a, resolve_wait=0.0))
            for n, a in zip(names, addresses, strict=True)
        ]

    def __repr__(self) -> str:
        return f"<Replicas {self.name} on {[r.node for r in self._replicas]}>"

    # -- routing ---------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Take down replicas whose node the heartbeats lost; bring back the ones Ray restarted
        (or whose node answers heartbeats again at its address).

        Never blocks: it reads the answers of questions to Ray that have arrived.
        """
        for replica in self._replicas:
            self._check(replica)

    def _check(self, replica: _Replica) -> None:
        if replica.up and self.local.peer_state(replica.ref.node or "") == "down":
            self._lost(replica)
        if replica.up:
            return
        moved = replica.ref.follow(0.0)  # reads Ray's answer once it has come
        if moved or self.local.peer_state(replica.ref.node or "") == "up":
            with self._lock:
                replica.revived += 1
                replica.up = True

    def wait_up(self, count: int | None = None, timeout: float = 60.0) -> int:
        """Wait until ``count`` replicas (default: all) are up; return how many are.

        Raises:
            ClusterError: fewer were up after ``timeout`` seconds.
        """
        want = len(self._replicas) if count is None else count
        deadline = time.monotonic() + timeout
        while True:
            self.refresh()
            up = sum(r.up for r in self._replicas)
            left = deadline - time.monotonic()
            if up >= want:
                return up
            if left <= 0:
                raise ClusterError(f"only {up} of {want} replicas of {self.name!r} up")
            down = next(r for r in self._replicas if not r.up)
            try:  # follow its node through Ray and wait for its heartbeats, a second at most
                down.ref.wait_up(timeout=min(left, 1.0))
            except ClusterError:
                continue

    def _lost(self, replica: _Replica) -> None:
        with self._lock:
            if replica.up:
                replica.up = False
                replica.lost += 1

    def _pick(self, avoid: _Replica | None) -> _Replica:
        self.refresh()
        with self._lock:
            up = [r for r in self._replicas if r.up and r is not avoid]
            if not up:
                down = ", ".join(r.node for r in self._replicas if not r.up) or "none"
                raise NodeUnreachable(
                    f"no replica of {self.name!r} can take the ask (down: {down}); Ray restarts "
                    "lost nodes, retry later or wait with wait_up()"
                )
            turn = next(self._turn)
            best = min(range(len(up)), key=lambda i: (up[i].in_flight, (i - turn) % len(up)))
            chosen = up[best]
            chosen.in_flight += 1
            return chosen

    def _send(self, message: Any, outer: Reply[Any], retries: int, avoid: _Replica | None) -> None:
        try:
            replica = self._pick(avoid)
        except NodeUnreachable as exc:
            outer.set_exception(exc)
            return
        left = outer.deadline - time.monotonic()
        try:
            if left <= 0:
                raise NodeUnreachable("no time left")  # settled as AskTimeout below
            inner = replica.ref.ask(message, timeout=left)
        except BaseException as exc:
            self._settled(replica, exc, message, outer, retries)
            return
        inner.add_done_callback(
            lambda reply: self._settled(replica, reply, message, outer, retries)
        )

    def _settled(
        self,
        replica: _Replica,
        reply: Reply[Any] | BaseException,
        message: Any,
        outer: Reply[Any],
        retries: int,
    ) -> None:
        with self._lock:
            replica.in_flight -= 1
        error = reply if isinstance(reply, BaseException) else reply.exception()
        if time.monotonic() >= outer.deadline and error is not None:
            outer.expire()
        elif isinstance(error, NodeUnreachable):
            self._lost(replica)
            if retries > 0 and not self._closed:
                self.retried += 1
                # Not in this thread: it is the node's I/O thread, which must never wait.
                self._retry_pool().submit(self._send, message, outer, retries - 1, replica)
            else:
                outer.set_exception(error)
        elif error is not None:
            outer.set_exception(error)
        else:
            assert isinstance(reply, Reply)
            with self._lock:
                replica.served += 1
            outer.set_result(reply.get())

    def _retry_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix=f"llmos:replicas-{self.name}"
                )
            return self._executor

    # -- the ActorRef interface -------------------------------------------------------------------

    def tell(self, message: Any) -> None:
        """Send to the least-loaded replica (a tell lost with its node is not resent)."""
        replica = self._pick(None)
        try:
            replica.ref.tell(message)
        finally:
            with self._lock:
                replica.in_flight -= 1

    def ask(self, message: Any, timeout: float | None = None) -> Reply[Any]:
        """Ask the least-loaded replica; resent once elsewhere if its node is lost (see the
        class). The reply raises NodeUnreachable when no replica could answer."""
        span = default_ask_timeout() if timeout is None else float(timeout)
        outer: Reply[Any] = Reply(time.monotonic() + span, self, span)
        self._send(message, outer, self.retries, None)
        return outer

    async def ask_async(self, message: Any, timeout: float | None = None) -> Any:
        """:meth:`ask` for asyncio: awaits the answer without blocking the event loop."""
        reply = self.ask(message, timeout)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def settle(done: Reply[Any]) -> None:
            if future.done():
                return
            error = done.exception()
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(done.get())

        reply.add_done_callback(lambda done: loop.call_soon_threadsafe(settle, done))
        expiry = loop.call_at(loop.time() + reply.span, reply.expire)
        try:
            return await future
        finally:
            expiry.cancel()

    def is_alive(self) -> bool:
        """True until :meth:`stop` (a pool with every replica down is waiting, not dead)."""
        return not self._closed

    def stop(self, timeout: float | None = None) -> bool:
        """Close this ref (the retry thread); the replicas keep running on their nodes."""
        self._closed = True
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        return True

    close = stop

    def replica_stats(self) -> tuple[ReplicaStats, ...]:
        """Each replica's state and counters."""
        with self._lock:
            return tuple(r.stats() for r in self._replicas)

    def statistics(self) -> ActorStats:
        """The replicas' counters summed (``in_flight``: asks not answered yet)."""
        stats = self.replica_stats()
        return ActorStats(
            name=self.name,
            state="running" if any(s.up for s in stats) else "restarting",
            mailbox_depth=0,
            in_flight=sum(s.in_flight for s in stats),
            processed=sum(s.served for s in stats),
            failed=sum(s.lost for s in stats),
            restarts=sum(s.revived for s in stats),
            busy_seconds=0.0,
            last_latency=0.0,
            mean_latency=0.0,
            class_name="Replicas",
        )
