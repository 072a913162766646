"""Delivery: what peers send, handed to local actors, and the answers sent back.

Runs in the I/O thread and never blocks it. A tell goes into the actor's mailbox
(``LocalRef.post``, which never waits); one that cannot be delivered is counted and recorded in
dead letters. An ask goes in with a reply whose done callback queues the answer frame back to
the I/O thread (:meth:`Delivery.answer`, from whichever thread settles it), so no thread waits
per request. Which items are admitted is decided before, by :class:`~llmos.transport._serve.Server`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from llmos.actors import ActorDeadError, AskAbandoned, MailboxFull, MessageError, Terminated, find
from llmos.actors.lowlevel import record_dead_letter, trace_state
from llmos.transport._control import no_actor, serve_reply
from llmos.transport._errors import FrameError, RequestExpired
from llmos.transport._frames import FAIL, REPLY, Payload
from llmos.transport._ref import RemoteRef

if TYPE_CHECKING:
    from llmos.actors import LocalRef
    from llmos.transport._capabilities import Account
    from llmos.transport._codec import Codec
    from llmos.transport._peer import Counters, Peer
    from llmos.transport._router import Router

__all__ = ["Delivery"]

_MAX_MISSING = 256


class Delivery:
    """Delivers tells and asks from peers to local actors and queues the answers.

    Args:
        codec: decodes messages, encodes answers (and knows this node's address, once bound).
        counters: the node's counters (undelivered tells).
        router: queues answer frames to the I/O thread.
        peers: the node's peer table (address -> Peer), read only (a ``Terminated`` from a
            peer ends the watch held there).
        max_payload: the largest answer that fits a frame.
    """

    def __init__(
        self,
        *,
        codec: Codec,
        counters: Counters,
        router: Router,
        peers: dict[str, Peer],
        max_payload: int,
    ) -> None:
        self.codec = codec
        self.counters = counters
        self.router = router
        self.peers = peers
        self.max_payload = max_payload
        self._missing: dict[str, bytes] = {}  # encoded "no such actor" errors, by name

    @property
    def address(self) -> str:
        """This node's address (known once it is bound)."""
        return self.codec.local_address

    # -- answers (any thread) -------------------------------------------------------------

    def answer(
        self, ident: bytes, rid: int, value: Any, error: BaseException | None, deadline: float
    ) -> None:
        """Queue the answer to request ``rid`` of connection ``ident``: ``value``, or ``error``
        when not None (or when ``value`` cannot be sent back)."""
        codec = self.codec
        if type(error) is AskAbandoned:  # its asker gave up and the actor did not start it
            self.counters.expired_requests += 1
            error = RequestExpired(
                f"the request was not started on node {self.address}: it stalled there past "
                "the time its asker gives up by, so the asker may have reported it failed"
            )
        elif error is None:
            try:
                payload = codec.encode_checked(value)
            except MessageError as exc:
                error = MessageError(f"the answer cannot be sent back to the asker: {exc}")
            else:
                if len(payload) > self.max_payload:
                    error = FrameError(
                        f"the answer is {len(payload)} bytes, over the frame limit of "
                        f"{self.max_payload}; return less or raise Limits.max_frame"
                    )
                else:
                    self.router.post_reply(ident, [REPLY, rid, payload], deadline)
                    return
        self.router.post_reply(ident, [FAIL, rid, codec.encode_error(error)], deadline)

    def fail(self, ident: bytes, rid: int, error: BaseException) -> None:
        """Queue ``error`` as the answer to request ``rid`` of connection ``ident``."""
        self.answer(ident, rid, None, error, math.inf)

    # -- what peers send ------------------------------------------------------------------

    def tell(
        self,
        target: str,
        msg: Any,
        local: LocalRef | None,
        arrived: float,
        trace: str | None = None,
    ) -> None:
        """Deliver a tell to ``local``, the actor named ``target`` here (None: there is none)."""
        if type(msg) is Terminated and isinstance(msg.ref, RemoteRef) and local is not None:
            peer = self.peers.get(msg.ref.node or "")
            if peer is not None:
                peer.end_watch(msg.ref.name, local)
        if local is None:
            self._undelivered(target, msg, "no such actor on this node")
            return
        if trace is None and trace_state.hook is not None:  # a recorder sees it delivered
            trace = trace_state.hook.incoming(msg)
        try:
            # Never waits; a stopped actor's go to dead letters.
            local.post(msg, sent_at=arrived, trace=trace)
        except MailboxFull:
            self._undelivered(target, msg, "mailbox full (remote tell)")
        except ActorDeadError:
            self._undelivered(target, msg, "no such actor on this node")

    def _undelivered(self, target: str, msg: Any, reason: str) -> None:
        self.counters.undelivered_tells += 1
        record_dead_letter(target, msg, reason)

    def ask(
        self,
        ident: bytes,
        rid: int,
        deadline: float,
        span: float,
        target: str,
        payload: Payload,
        account: Account,
        asker: Any,
        trace: str | None = None,
    ) -> None:
        """Post an admitted ask to the actor ``target``; its answer goes back when it settles.
        The actor does not start it if its ``asker`` gave up meanwhile (see ``serve_reply``)."""
        local = find(target)
        if local is None:
            # The cheapest answer (a flood of asks to no actor must not outrun the node): the
            # encoded error is kept per name, and nothing else is built.
            error = self._missing.get(target)
            if error is None:
                if len(self._missing) >= _MAX_MISSING:
                    self._missing.clear()
                gone = no_actor(target, self.address)
                error = self._missing[target] = self.codec.encode_error(gone)
            self.router.post_reply(ident, [FAIL, rid, error], deadline)
            return
        msg = self.codec.decode(payload)
        reply = serve_reply(deadline, target, span, self.answer, ident, rid, account, asker)
        if trace is None and trace_state.hook is not None:
            trace = trace_state.hook.incoming(msg)
        try:
            local.post(msg, reply, trace=trace)  # never waits
        except (MailboxFull, ActorDeadError) as exc:
            reply.set_exception(exc)
