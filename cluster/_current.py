"""current(): the cluster seen from inside one of its nodes (by an actor running there)."""

from __future__ import annotations

from ._cluster import Cluster
from ._errors import ClusterError
from ._host import hosted

__all__ = ["current"]


def current() -> Cluster:
    """The cluster of the llmos node this code runs on (an actor on a node that Ray started
    with :meth:`Cluster.start_nodes`): lookups, spawns and asks from it go through that node.

    Raises:
        ClusterError: this process is no llmos node started by Ray (a driver uses
            :meth:`Cluster.connect`).
    """
    host = hosted()
    if host is None:
        raise ClusterError(
            "llmos.cluster.current() works inside an llmos node that Ray started "
            "(Cluster.start_nodes); a driver uses Cluster.connect()"
        )
    return Cluster(host.namespace, host.keys, heartbeat=host.heartbeat, local=host.node)
