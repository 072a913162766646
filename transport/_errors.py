"""Errors the transport adds to the tree of :mod:`llmos.actors` (which defines the rest)::

TransportError                 (llmos.actors)
├── NodeUnreachable            (llmos.actors) peer down, gone, or missing heartbeats
├── FrameError                 (llmos.actors) garbage, truncated, too large, unknown kind
├── AuthError                  (llmos.actors) CURVE keys missing, wrong or not allowed
├── RemoteError                (llmos.actors) a remote error of a class unknown here
├── SpawnRefused               a node refused to spawn a class (not on its allowlist)
└── PeerBusy                   the send queue to a peer stayed full (also a MailboxFull)
"""

from __future__ import annotations

from llmos.actors import MailboxFull, TransportError

__all__ = ["PeerBusy", "SpawnRefused"]


class SpawnRefused(TransportError):  # type: ignore[misc,unused-ignore]
    """Raised by ``Node.spawn_remote`` when the other node refuses to spawn the class.

    The import path is not on that node's ``allow_spawn`` list (exact ``"pkg.mod:Class"`` or a
    ``"pkg.mod:*"`` wildcard), so it never imported the module. Unlike an error raised by the
    actor's constructor (which arrives as that error), nothing ran on the other node. Add the
    path to the other node's allowlist to permit it.
    """


class PeerBusy(TransportError, MailboxFull):  # type: ignore[misc,unused-ignore]
    """Raised when the send queue to a peer node stays full for the whole send timeout.

    The peer (or the network) is slower than the senders; the message was not queued and
    nothing was lost silently. Slow down, retry later, or raise ``max_outbox`` /
    ``send_timeout`` on the sending node. It is also a :class:`~llmos.actors.MailboxFull`,
    so code handling local back-pressure handles remote back-pressure the same way.
    """
