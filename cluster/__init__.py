# llmos.cluster: llmos nodes placed, named and restarted by Ray (the ``llmos[ray]`` extra);
# ZeroMQ still carries every message between them. Ray is imported only when used.
#   _errors    ClusterError
#   _ray       the lazy Ray import, Ray actor names
#   _info      NodeInfo (a node as it reports itself), fits (resource matching)
#   _placement Strategy, place (a placement group or Ray's scheduling), release_groups
#   _host      NodeHost (the node inside a Ray actor), BootActor, Registry and cluster_keys
#              (the cluster's keys)
#   _ref       ClusterRef (a ref by node name that follows the node across Ray's restarts)
#   _replicas  Replicas (one ref over an actor on several nodes: least load, retry, rejoin)
#   _cluster   Cluster (connect, start_nodes, nodes, lookup, pick, spawn, replicas, down)
#   _current   current (the cluster seen by an actor on one of its nodes)
# Within the package: _errors -> _ray -> _info, _placement, _host, _ref, _replicas -> _cluster
# -> _current.
# Imports point to llmos.kernel, llmos.transport and llmos.actors; llmos.cli imports this.
from llmos.cluster._cluster import Cluster
from llmos.cluster._current import current
from llmos.cluster._errors import ClusterError
from llmos.cluster._host import BootActor, NodeHost, Registry, import_actor_class
from llmos.cluster._info import NodeInfo, fits
from llmos.cluster._placement import Strategy
from llmos.cluster._ref import ClusterRef
from llmos.cluster._replicas import Replicas, ReplicaStats

__all__ = [
    "BootActor",
    "Cluster",
    "ClusterError",
    "ClusterRef",
    "NodeHost",
    "NodeInfo",
    "Registry",
    "ReplicaStats",
    "Replicas",
    "Strategy",
    "current",
    "fits",
    "import_actor_class",
]
