"""Requests on the node itself, not on an actor's mailbox: spawn, stop, watch, lookup, statistics.

Each is checked against the capability model first (:mod:`llmos.transport._capabilities`):
only allowlisted classes are spawned, within the peer's spawn quota; a peer stops only what it
may stop; watches count against its watch quota. Runs in the I/O thread, except the import and
construction of a spawned class, which run on the node's spawn pool.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llmos.actors import ActorDeadError, ActorRef, LocalRef, Reply, Terminated, find
from llmos.transport._capabilities import Account, Capabilities, Quotas
from llmos.transport._errors import FrameError, NotAllowed, QuotaExceeded, SpawnFailed
from llmos.transport._ref import Callback, QuietRef

if TYPE_CHECKING:
    from llmos.transport._codec import Codec
    from llmos.transport._frames import Payload
    from llmos.transport._peer import Counters

__all__ = [
    "Answer",
    "Control",
    "SpawnWorkers",
    "Spawner",
    "default_spawner",
    "no_actor",
    "serve_reply",
]

Spawner = Callable[[type, tuple[Any, ...], dict[str, Any], str | None], ActorRef]
"""``spawner(cls, args, kwargs, name) -> ref``: how a node starts a remotely requested actor."""


def default_spawner(
    cls: type, args: tuple[Any, ...], kwargs: dict[str, Any], name: str | None
) -> ActorRef:
    """Start an unsupervised actor: ``cls.start(*args, name=name, **kwargs)``."""
    ref: ActorRef = cls.start(*args, name=name, **kwargs)  # type: ignore[attr-defined]
    return ref


Answer = Callable[[bytes, int, Any, "BaseException | None", float], None]
"""``answer(ident, rid, value, error, deadline)``: send a request's answer back to its asker."""


def no_actor(target: str, address: str) -> ActorDeadError:
    return ActorDeadError(
        f"no actor named {target!r} is running on node {address}; start it there "
        "(or spawn it remotely) and resend"
    )


def serve_reply(
    deadline: float,
    target: Any,
    span: float,
    answer: Answer,
    ident: bytes,
    rid: int,
    account: Account | None = None,
    asker: Any = None,
) -> Reply:
    """The reply to a peer's request: once it settles, ``answer`` queues its answer to the I/O
    thread (from its done callback, in whichever thread settles it: the actor's, a spawn
    worker, the I/O thread itself). It counts as one pending request of ``account``.
    ``asker`` becomes ``Reply.asker`` for a request that waits in a queue before it starts
    (see RemoteAsker: it is not started once its asker gave up)."""
    reply = Reply(deadline, target, span)
    reply.asker = asker
    if account is not None:
        account.pending += 1  # one more request of this peer in progress here

    def settled(done: Reply) -> None:
        if account is not None:
            account.pending -= 1
        error = done.exception()
        answer(ident, rid, None if error is not None else done.get(), error, deadline)

    reply.add_done_callback(settled)
    return reply


class SpawnWorkers:
    """The threads that run remote spawn requests (a constructor may block), started on first
    use.

    Args:
        name: the node's name (in the threads' names).
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def executor(self) -> concurrent.futures.ThreadPoolExecutor:
        """The pool (started now if it is not running)."""
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    2, thread_name_prefix=f"llmos:io-{self._name}-spawn"
                )
            return self._pool

    def shutdown(self) -> None:
        """Wait for the spawns running, cancel those queued (a later spawn starts a new pool)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


class Control:
    """The node-control requests of peers (see the module doc).

    Args:
        answer: how an answer goes back to its asker.
        codec: decodes requests (and knows this node's address, once bound).
        remote_ref: the ref to an actor of another node.
        spawner: how an allowed spawn starts its actor (read at each spawn: a kernel may
            plug in after the node started).
        spawn_executor: the threads that run constructors (a constructor may block).
    """

    def __init__(
        self,
        answer: Answer,
        *,
        codec: Codec,
        counters: Counters,
        capabilities: Capabilities,
        quotas: Quotas,
        remote_ref: Callable[[str, str], ActorRef],
        spawner: Callable[[], Spawner],
        spawn_executor: Callable[[], concurrent.futures.Executor],
    ) -> None:
        self.answer = answer
        self.codec = codec
        self.counters = counters
        self.capabilities = capabilities
        self.quotas = quotas
        self.remote_ref = remote_ref
        self.spawner = spawner
        self.spawn_executor = spawn_executor
        self.lookup = self.about(lambda ref: ref)
        self.stats = self.about(lambda ref: dataclasses.asdict(ref.statistics()))

    @property
    def address(self) -> str:
        """This node's address (known once it is bound)."""
        return self.codec.local_address

    def about(self, answer: Callable[[LocalRef], Any]) -> Callable[..., None]:
        """A request handler answering ``answer(ref)`` about a local actor, by name."""

        def handle(
            ident: bytes,
            rid: int,
            deadline: float,
            span: float,
            target: str,
            payload: Payload,
            account: Account,
        ) -> None:
            reply = serve_reply(deadline, target, span, self.answer, ident, rid)
            local = find(target)
            if local is None:
                reply.set_exception(no_actor(target, self.address))
            else:
                reply.set_result(answer(local))

        return handle

    def stop(
        self,
        ident: bytes,
        rid: int,
        deadline: float,
        span: float,
        target: str,
        payload: Payload,
        account: Account,
    ) -> None:
        local = find(target)
        if local is None:
            account.spawned.discard(target)
            self.answer(ident, rid, True, None, deadline)  # nothing to stop: done
            return
        self.capabilities.check_stop(target, local.actor_class, account, self.address)
        reply = serve_reply(deadline, target, span, self.answer, ident, rid)
        account.spawned.discard(target)
        local.watch(Callback(f"stop-{rid}", lambda _msg: reply.set_result(True)))
        local.stop(block=False)

    def watch(self, target: str, watcher: ActorRef, on: bool, account: Account) -> None:
        local = find(target)
        if not on:
            if local is not None:
                local.unwatch(watcher)
                account.watches = max(0, account.watches - 1)
            return
        if account.watches >= self.quotas.max_watches:
            raise QuotaExceeded(
                f"this peer already holds {account.watches} watches on node "
                f"{self.address} (Quotas.max_watches); unwatch some first"
            )
        if local is None:
            gone = self.remote_ref(target, self.address)
            QuietRef(watcher).tell(Terminated(gone, "no such actor"))
            return
        account.watches += 1
        local.watch(QuietRef(watcher))

    def spawn(
        self,
        ident: bytes,
        rid: int,
        deadline: float,
        span: float,
        path: str,
        payload: Payload,
        account: Account,
        asker: Any,
    ) -> None:
        """Start a spawn request in a spawn worker, which does not start it if its ``asker``
        gave up meanwhile (see :func:`serve_reply`)."""
        if not self.capabilities.spawn_allowed(path):
            self.counters.refusals += 1
            account.refused += 1
            account.note(self.quotas, self.address, f"was refused spawning {path!r}")
            self.answer(ident, rid, None, self.capabilities.refusal(path, self.address), deadline)
            return
        spawned = account.spawned
        if len(spawned) >= self.quotas.max_spawned:
            for gone in [name for name in spawned if find(name) is None]:
                spawned.discard(gone)  # stopped since: no longer held
            if len(spawned) >= self.quotas.max_spawned:
                raise QuotaExceeded(
                    f"this peer already runs {len(spawned)} actors it spawned on node "
                    f"{self.address} (Quotas.max_spawned); stop some first"
                )
        spec = self.codec.decode(payload)
        if (
            type(spec) is not list
            or len(spec) != 3
            or type(spec[0]) is not tuple
            or type(spec[1]) is not dict
            or not (spec[2] is None or type(spec[2]) is str)
            or not all(type(k) is str for k in spec[1])
        ):
            raise FrameError("a spawn request must carry [args tuple, kwargs dict, name]")
        reply = serve_reply(deadline, path, span, self.answer, ident, rid, account, asker)
        self.spawn_executor().submit(
            self.run_spawn, reply, account, path, spec[0], spec[1], spec[2]
        )

    def run_spawn(
        self,
        reply: Reply,
        account: Account,
        path: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        name: str | None,
    ) -> None:
        if reply.expired():
            reply.expire()
            return
        if reply.abandoned():
            reply.abandon()
            return
        try:
            cls = self.capabilities.resolve(path, self.address)
            ref = self.spawner()(cls, args, kwargs, name)
        except NotAllowed as exc:
            self.counters.refusals += 1
            account.refused += 1
            reply.set_exception(exc)
        except Exception as exc:
            reply.set_exception(exc)
        except BaseException as exc:  # SystemExit, KeyboardInterrupt... from the constructor
            error = SpawnFailed(
                f"constructing {path} on node {self.address} raised {exc!r}; the actor "
                "was not started"
            )
            error.__cause__ = exc
            reply.set_exception(error)
        else:
            account.spawned.add(ref.name)
            reply.set_result(ref)
