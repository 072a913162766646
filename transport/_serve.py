"""The serving side: frames arriving from peers on the node's ROUTER socket.

Runs in the I/O thread and never blocks it. Each frame is parsed and each of its items checked
and admitted here; what is admitted goes to :class:`~llmos.transport._delivery.Delivery` (tells
and asks for local actors) or :class:`~llmos.transport._control.Control` (requests on the node
itself). A request whose deadline has already passed (a stale backlog after a reconnect, or a
frozen peer) is not executed. A bad frame is dropped and counted, and its sender gets a NOTICE;
each item of a good frame is handled alone: a bad one (any msgpack value in any position) is
rejected and counted, its asker gets the error as its reply (or the peer a NOTICE, within its
notice quota), and the items around it are served. What a peer may do here is decided by
:mod:`llmos.transport._capabilities`, per peer (its connection).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from llmos.actors import ActorRef, LlmosError, LocalRef, find
from llmos.actors.tracing import check_traceparent
from llmos.transport._asker import Hearing, RemoteAsker
from llmos.transport._capabilities import Account, Quotas
from llmos.transport._control import Control
from llmos.transport._errors import FrameError, NotAllowed, QuotaExceeded, RequestExpired
from llmos.transport._frames import (
    ASK,
    LOOKUP,
    NOTICE,
    PING,
    PONG,
    REQUEST_OPS,
    SPAWN,
    STATS,
    STOP,
    TELL,
    UNWATCH,
    WATCH,
    Payload,
    is_payload,
    pack_frame,
    parse_frame,
)
from llmos.transport._io import Pulse

if TYPE_CHECKING:
    from llmos.transport._codec import Codec
    from llmos.transport._delivery import Delivery
    from llmos.transport._frames import Limits
    from llmos.transport._peer import Counters
    from llmos.transport._router import Router

__all__ = ["Server"]

_monotonic = time.monotonic
_time = time.time
_NUMBER = (int, float)
_MAX_ACCOUNTS = 1024  # accounts (and connections' hearings) kept before idle ones are pruned


class Server:
    """Handles frames arriving on the node's ROUTER socket.

    Args:
        delivery: where admitted tells and asks go (and how answers go back).
        control: where admitted requests on the node itself go (spawn, stop, watch...).
        clock_skew: seconds of wall-clock difference allowed when judging a deadline.
        pulse: the I/O thread's turns (a gap in them: this node was frozen or starved).
        The others: the node's parts and settings that the checks read.
    """

    def __init__(
        self,
        *,
        codec: Codec,
        limits: Limits,
        counters: Counters,
        quotas: Quotas,
        router: Router,
        delivery: Delivery,
        control: Control,
        clock_skew: float,
        pulse: Pulse,
    ) -> None:
        self.codec = codec
        self.pulse = pulse
        self.limits = limits
        self.counters = counters
        self.quotas = quotas
        self.router = router
        self.clock_skew = clock_skew
        self.accounts: dict[bytes, Account] = {}
        self.hearings: dict[bytes, Hearing] = {}  # by connection
        self._next_prune = 0.0
        self.delivery = delivery
        self.control = control
        self._requests: dict[int, _Request] = {
            LOOKUP: control.lookup,
            STOP: control.stop,
            STATS: control.stats,
        }

    @property
    def address(self) -> str:
        """This node's address (known once it is bound)."""
        return self.codec.local_address

    # -- frames ---------------------------------------------------------------------------

    def account(self, ident: bytes) -> Account:
        """The account of the peer behind connection ``ident``: its CURVE key on a keyed node,
        else the connection (created on first use, pruned when idle)."""
        who = self.router.principal(ident)
        account = self.accounts.get(who)
        if account is None:
            now = _monotonic()
            if len(self.accounts) >= _MAX_ACCOUNTS and now >= self._next_prune:
                self._prune(now)
            # who: b"key:" + a Z85 key (printable), or a connection's binary identity.
            label = who.decode() if who.startswith(b"key:") else who.hex()
            account = self.accounts[who] = Account(label)
        return account

    def hearing(self, ident: bytes) -> Hearing:
        """How this node hears connection ``ident`` (created on first use, pruned when idle)."""
        hearing = self.hearings.get(ident)
        if hearing is None:
            now = _monotonic()
            if len(self.hearings) >= _MAX_ACCOUNTS and now >= self._next_prune:
                self._prune(now)
            hearing = self.hearings[ident] = Hearing(self.pulse.gap)
        return hearing

    def _prune(self, now: float) -> None:
        """Forget accounts with nothing pending or spawned that were not seen for a while."""
        self._next_prune = now + 1.0
        idle = self.quotas.log_interval
        for who, account in list(self.accounts.items()):
            if not account.pending and not account.spawned and now - account.last_seen > idle:
                del self.accounts[who]
        for ident, hearing in list(self.hearings.items()):  # a request keeps its own
            if now - hearing.seen.last > idle:
                del self.hearings[ident]

    def on_frame(self, ident: bytes, data: bytes, parts: Sequence[Payload]) -> int:
        """Handle one message from the ROUTER (from connection ``ident``: a frame, and the
        parts that followed it); return how many items it held."""
        try:
            items = parse_frame(data, self.limits, parts)
        except FrameError as exc:
            self._reject(ident, str(exc))
            return 1
        account = self.account(ident)
        arrived = _monotonic()  # one arrival time for the whole frame
        account.last_seen = arrived
        self.hearing(ident).seen.beat(arrived)
        self.counters.frames_in += 1
        self.counters.bytes_in += len(data) + (sum(map(len, parts)) if parts else 0)
        self.counters.items_in += len(items)
        decode = self.codec.decode
        tell = self.delivery.tell
        name: str | None = None  # a burst of tells is usually for one actor: look it up once
        local: LocalRef | None = None
        for item in items:
            try:
                # The hot path (a burst of tells) first, without a call per check.
                if (
                    type(item) is list
                    and len(item) == 3
                    and type(item[0]) is int
                    and item[0] == TELL
                    and type(item[1]) is str
                    and is_payload(item[2])
                ):
                    msg = decode(item[2])
                    if item[1] != name or local is None:
                        name = item[1]
                        local = find(name)
                    tell(name, msg, local, arrived)
                elif (
                    type(item) is list
                    and len(item) == 7
                    and type(item[0]) is int
                    and item[0] == ASK
                ):
                    self._request(ident, ASK, item, account)  # the other hot path: one ask
                else:
                    self._item(ident, item, account)
            except (LlmosError, ValueError, TypeError) as exc:
                self._bad_item(ident, item, account, exc)
            except Exception as exc:  # a bug must not stop the node from serving the rest
                self._bad_item(ident, item, account, exc, bug=True)
        return len(items)

    def _bad_item(
        self, ident: bytes, item: Any, account: Account, error: Exception, bug: bool = False
    ) -> None:
        """Count a rejected item, answer it (a FAIL for a request, else a NOTICE), log rarely."""
        if isinstance(error, RequestExpired):
            self.delivery.fail(ident, _request_id(item) or 0, error)  # counted as expired already
            return
        if isinstance(error, NotAllowed):
            if isinstance(error, QuotaExceeded):
                self.counters.quota_refusals += 1
            else:
                self.counters.refusals += 1
            account.refused += 1
            what = "was refused"
        else:
            self.counters.bad_items += 1
            account.bad += 1
            what = "failed to handle an item" if bug else "sent a rejected item"
        account.note(
            self.quotas,
            self.address,
            f"{what}: {type(error).__name__}: {error}",
            error if bug else None,
        )
        rid = _request_id(item)
        if rid is not None:
            self.delivery.fail(ident, rid, error)
        else:
            self._notice(ident, f"item rejected: {error}", account)

    def _reject(self, ident: bytes, text: str) -> None:
        self.counters.bad_frames += 1
        account = self.account(ident)
        account.bad += 1
        account.note(self.quotas, self.address, f"sent a bad frame: {text}")
        self._notice(ident, text, account)

    def _notice(self, ident: bytes, text: str, account: Account) -> None:
        if not account.allow_notice(self.quotas, _monotonic()):
            self.counters.notices_withheld += 1  # over its notice quota: counted, not sent
            return
        self.router.send_notice(ident, pack_frame([[NOTICE, text[:500], b""]]))

    def _item(self, ident: bytes, item: Any, account: Account) -> None:
        if type(item) is not list or not item:
            raise FrameError("an item must be a non-empty array")
        op = item[0]
        if type(op) is not int:
            raise FrameError(f"an item's op code must be an int, got {type(op).__name__}")
        if op == TELL:
            size = len(item)
            if size not in (3, 4) or type(item[1]) is not str or not is_payload(item[2]):
                raise FrameError("malformed tell item")
            trace = self._trace(item[3]) if size == 4 else None
            msg = self.codec.decode(item[2])
            self.delivery.tell(item[1], msg, find(item[1]), _monotonic(), trace)
        elif op in REQUEST_OPS:
            self._request(ident, op, item, account)
        elif op == PING:
            hearing = self.hearing(ident)
            hearing.pinged(item[1] if len(item) > 1 else None, item[3] if len(item) > 3 else None)
            self.router.post_reply(ident, [PONG, 0, b""], math.inf)
        elif op == WATCH or op == UNWATCH:
            if len(item) != 3 or type(item[1]) is not str or not is_payload(item[2]):
                raise FrameError("malformed watch item")
            watcher = self.codec.decode(item[2])
            if not isinstance(watcher, ActorRef):
                raise FrameError("a watch item must carry the watcher's ref")
            self.control.watch(item[1], watcher, op == WATCH, account)
        else:
            raise FrameError(f"unknown item kind {op!r}")

    def _request(self, ident: bytes, op: int, item: list[Any], account: Account) -> None:
        """A request item ``[op, id, span, deadline, target, payload, give_up]`` (see _frames),
        with an eighth field when it carries a trace context.

        One whose asker has given up (past its deadline or its give-up time, allowing
        ``clock_skew``) is refused with :class:`RequestExpired` without being started.
        """
        size = len(item)
        if not 6 <= size <= 8:
            raise FrameError(f"a request item has 7 fields (8 with a trace context), got {size}")
        rid, span, wall, target, payload = item[1:6]
        give_up = item[6] if size >= 7 else wall
        if (
            type(rid) is not int
            or type(span) not in _NUMBER
            or type(wall) not in _NUMBER
            or type(give_up) not in _NUMBER
            or type(target) is not str
            or not is_payload(payload)
            or not 0 < span < math.inf
        ):
            raise FrameError("malformed request item")
        skew = self.clock_skew
        now = _time()
        left = min(span, wall - now + skew)
        if left <= 0 or give_up + skew < now:
            self.counters.expired_requests += 1  # the asker has given up: do not run it
            raise RequestExpired(
                f"the request reached node {self.address} "
                f"{now - min(wall, give_up):.3g} s after its asker could have given up on it "
                "(a timeout, or the node looked unreachable); it was not started"
            )
        if account.pending >= self.quotas.max_pending:
            raise QuotaExceeded(
                f"this peer already has {account.pending} requests in progress on node "
                f"{self.address} (Quotas.max_pending); wait for their answers"
            )
        read = _monotonic()
        hearing = self.hearing(ident)
        if give_up < wall and give_up - (wall - span) < hearing.seen.gap:
            # The asker gives up on this node less than half its heartbeat timeout after it
            # sent this: it had not heard this node for over half that timeout (see RemoteAsker).
            hearing.unheard = read
        args = (ident, rid, read + left, float(span), target, payload, account)
        # Asks and spawns wait in a queue before they start: their asker may give up meanwhile.
        asker = RemoteAsker(self.pulse, hearing, read, read + (give_up + skew - now))
        if op == ASK:
            self.delivery.ask(*args, asker, self._trace(item[7]) if size == 8 else None)
        elif op == SPAWN:
            self.control.spawn(*args, asker)
        else:
            self._requests[op](*args)

    def _trace(self, value: Any) -> str | None:
        """A peer's trace context if well formed; else None, counted (it serves tracing only,
        so the message is delivered without it)."""
        trace = check_traceparent(value)
        if trace is None:
            self.counters.bad_traces += 1
        return trace


_Request = Callable[[bytes, int, float, float, str, Payload, Account], None]
"""A request handler: (ident, id, deadline, span, target, payload, the peer's account)."""


def _request_id(item: Any) -> int | None:
    """The request id of an item that is a request, else None (never raises)."""
    if (
        type(item) is list
        and len(item) > 1
        and type(item[0]) is int
        and item[0] in REQUEST_OPS
        and type(item[1]) is int
    ):
        return item[1]
    return None
