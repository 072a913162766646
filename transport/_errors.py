"""Errors of the transport, a branch of the tree drawn in :mod:`llmos.actors`::

TransportError                 something went wrong between nodes (an llmos.actors.LlmosError)
├── NodeUnreachable            peer down, gone, or missing heartbeats
├── FrameError                 garbage, truncated, too large, unknown kind
├── AuthError                  CURVE keys missing, wrong or not allowed
├── RemoteError                a remote error of a class unknown here
├── NotAllowed                 a node refused what a peer may not do there (nothing ran)
│   ├── SpawnRefused           the class is not on the node's spawn allowlist
│   └── QuotaExceeded          the peer is over one of its per-peer quotas on that node
├── SpawnFailed                the class allowed could not be started there (nothing runs)
├── RequestExpired             a request reached its node after its asker had given up
└── PeerBusy                   the send queue to a peer stayed full (also a MailboxFull)

What a caller may assume after each error of a remote request (``ask``, ``spawn_remote``,
``lookup``, ``stop``, ``statistics``):

- **not run**: :class:`NotAllowed` and its subclasses, :class:`SpawnFailed`,
  :class:`RequestExpired`, :class:`PeerBusy`, ``FrameError`` (the request or payload was refused),
  ``ActorDeadError`` for "no actor named ... is running", ``MailboxFull`` (the remote mailbox
  was full), ``NodeUnreachable`` raised by the call itself (the peer was known to be down, so
  nothing was sent), ``MessageError`` raised by the call itself (nothing was sent);
- **may have run**: ``AskTimeout`` and ``NodeUnreachable`` delivered while the request was
  pending (the request may have started before the asker gave up; it is never started
  afterwards: each request carries the time its asker gives up, and the other node refuses one
  that arrives later, within ``clock_skew``; an ask or spawn it had read and queued before is
  refused when taken off the queue past that time if, since it was read, the node stopped
  turning (frozen, starved), the asker stopped sending heartbeats for half its heartbeat
  timeout (which its heartbeats declare), or a heartbeat of the asker said it had not heard
  the node for that long (a one-way cut), since the asker may then have stopped hearing the
  node; a node that kept all three going kept answering the asker's heartbeats, so the asker
  still waits and the request runs);
- **ran**: a result, or the exception the handler (or the remotely spawned constructor) raised.
"""

from __future__ import annotations

from llmos.actors import LlmosError, MailboxFull

__all__ = [
    "AuthError",
    "FrameError",
    "NodeUnreachable",
    "NotAllowed",
    "PeerBusy",
    "QuotaExceeded",
    "RemoteError",
    "RequestExpired",
    "SpawnFailed",
    "SpawnRefused",
    "TransportError",
]


class TransportError(LlmosError):
    """A problem between nodes: the peer, the frame or the keys."""


class NodeUnreachable(TransportError):
    """Raised when a peer node is down, gone, or missed its heartbeats.

    Pending asks to that node fail with this error as soon as the node is marked down, not at
    their own timeout. Refs to it work again once it comes back.
    """


class FrameError(TransportError):
    """Raised (or counted) when a frame is garbage, truncated, too large or of unknown kind."""


class AuthError(TransportError):
    """Raised when CURVE keys are missing or wrong, or binding off loopback without keys."""


class RemoteError(TransportError):
    """An exception raised on another node whose class is not known in this process.

    Attributes:
        type_name: the qualified name of the remote exception's class.
        text: the remote exception's message.
    """

    def __init__(self, type_name: str, text: str) -> None:
        super().__init__(f"{type_name}: {text}")
        self.type_name = type_name
        self.text = text


class NotAllowed(TransportError):  # type: ignore[misc,unused-ignore]
    """Raised when a node refuses a request that the asking peer may not make there.

    Stopping an actor the peer did not spawn (see ``remote_stop`` on
    :class:`~llmos.transport.Node`), stopping a system actor (its class sets ``actor_system``),
    or sending a local-only message (declared with ``@message(..., local_only=True)``) to
    another node. Nothing ran on the other node. Unlike a ``FrameError`` the request was well
    formed; change what is asked, or the other node's settings.
    """


class SpawnRefused(NotAllowed):  # type: ignore[misc,unused-ignore]
    """Raised by ``Node.spawn_remote`` when the other node refuses to spawn the class.

    The import path is not on that node's ``allow_spawn`` list (exact ``"pkg.mod:Class"``, or a
    ``"pkg.mod:*"`` wildcard, which covers only classes defined in ``pkg.mod`` itself and named
    without dots), so nothing was constructed. Unlike an error raised by the actor's constructor
    (which arrives as that error), nothing ran on the other node. Add the path to the other
    node's allowlist to permit it.
    """


class QuotaExceeded(NotAllowed):  # type: ignore[misc,unused-ignore]
    """Raised when a request would take the asking peer over one of its quotas on that node.

    Quotas bound what one peer may hold on a node at a time: actors it spawned, requests
    pending there, and (on this node) peers that refs in messages may make it connect to (see
    :class:`~llmos.transport.Quotas`). Nothing ran; each refusal is counted in
    :class:`~llmos.transport.NodeStats`. Retry once earlier requests are answered or earlier
    actors stopped, or raise the quota on that node.
    """


class SpawnFailed(TransportError):
    """Raised by ``Node.spawn_remote`` when the other node could not start the class it allows.

    The path names something other than a class, or the constructor raised a
    ``BaseException`` that is not an ``Exception`` (``SystemExit``, ``KeyboardInterrupt``...),
    which the node contains instead of dying (an ``Exception`` from the constructor arrives as
    itself). No actor was started. Fix the class or the path.
    """


class RequestExpired(TransportError):  # type: ignore[misc,unused-ignore]
    """Raised when a request reaches its node after the time its asker gives up by.

    The request was delayed (a frozen node, a backlog, a lost connection) past its timeout or
    past the moment the asker would have declared the node unreachable, so it was not started:
    the asker has (or would have) given up on it, and running it then could run it twice for a
    caller that retries. Nothing ran. Retry if the node is reachable again.
    """


class PeerBusy(TransportError, MailboxFull):  # type: ignore[misc,unused-ignore]
    """Raised when the send queue to a peer node stays full for the whole send timeout.

    The peer (or the network) is slower than the senders; the message was not queued and
    nothing was lost silently. Slow down, retry later, or raise ``max_outbox`` /
    ``send_timeout`` on the sending node. It is also a :class:`~llmos.actors.MailboxFull`,
    so code handling local back-pressure handles remote back-pressure the same way.
    """
