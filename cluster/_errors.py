"""ClusterError: what llmos.cluster raises itself (a branch of the tree in llmos.actors)."""

from __future__ import annotations

from llmos.actors import LlmosError

__all__ = ["ClusterError"]


class ClusterError(LlmosError):
    """The cluster cannot do what was asked: Ray is missing or unreachable, no llmos node of
    that name runs, no node has the resources asked for, or a node did not start in time.

    Unlike :class:`~llmos.transport.NodeUnreachable` (an llmos node stopped answering on the
    message plane), this is about placing and finding nodes through Ray.
    """
