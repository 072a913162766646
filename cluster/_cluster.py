"""Cluster: a driver's handle on the llmos nodes that Ray places, restarts and names.

Example::

    with Cluster.connect() as cluster:                 # ray.init() unless already connected
        cluster.start_nodes(["m1", "m2"], actors=[BootActor("llmos.models:ModelActor", "model")])
        model = cluster.replicas("model")              # one ref, least-loaded over m1 and m2
        print(cluster.nodes())
        cluster.down()                                 # every node, its Ray actor and sockets
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from llmos.actors import ActorDeadError, ActorRef
from llmos.kernel import KERNEL_NAME, NodeStatus
from llmos.transport import KeyPair, Node

from ._errors import ClusterError
from ._host import BootActor, NodeHost, cluster_keys
from ._info import NodeInfo, fits
from ._placement import Strategy, host_options, place, release_groups
from ._ray import NODE_PREFIX, REGISTRY, import_ray, is_timeout, last_line
from ._ref import ClusterRef
from ._replicas import Replicas

__all__ = ["Cluster"]


class Cluster:
    """The llmos nodes of one Ray namespace, seen from a driver (get one with :meth:`connect`).

    The driver has its own llmos node (:attr:`local`, bound on ``bind_host`` with the cluster's
    CURVE keys): every ask to a node's actor goes over ZeroMQ, never through Ray. Ray only
    places, names and restarts the node processes.

    Args:
        namespace: the Ray namespace whose ``llmos-node:*`` actors are this cluster's nodes.
        keys: the cluster's key pair (every node and driver shares it).
        bind_host: the IP the driver's node binds (default: this Ray node's IP).
        heartbeat: the heartbeat timeout of the driver's node and of nodes started here.
        local: a node to carry the messages instead of a new one (kept open by :meth:`close`;
            how :func:`current` uses the node it runs on).
    """

    def __init__(
        self,
        namespace: str,
        keys: KeyPair,
        *,
        bind_host: str | None = None,
        heartbeat: float = 3.0,
        owns_ray: bool = False,
        local: Node | None = None,
    ) -> None:
        self.ray: Any = import_ray()
        self.namespace = namespace
        self.keys = keys
        self.bind_host = bind_host
        self.heartbeat = heartbeat
        self.owns_ray = owns_ray
        self.owns_local = local is None
        if local is not None:
            self.local = local
            return
        host = bind_host or self.ray.util.get_node_ip_address()
        self.local = Node(
            f"tcp://{host}:0",
            name=f"driver-{os.getpid()}",
            keys=keys,
            allow_keys=[keys.public],
            default_peer_key=keys.public,
            heartbeat=heartbeat,
        )

    @classmethod
    def connect(
        cls,
        address: str | None = None,
        *,
        namespace: str = "llmos",
        bind_host: str | None = None,
        heartbeat: float = 3.0,
        timeout: float = 60.0,
        create: bool = True,
    ) -> Cluster:
        """Join (or start) the cluster of ``namespace`` on the Ray cluster at ``address``.

        Connects this process to Ray unless it already is (``address=None``: a running local
        cluster, else a new one). The first driver of a namespace makes its key pair; later
        ones fetch it from the namespace's registry actor.

        Args:
            create: make the namespace's registry when there is none (False: raise instead;
                this process then stays connected to Ray).

        Raises:
            ClusterError: Ray is not installed or cannot be reached, or ``create`` is False
                and the namespace has no llmos cluster.
        """
        ray: Any = import_ray()
        owns = False
        if not ray.is_initialized():
            try:
                ray.init(
                    address=address,
                    namespace=namespace,
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ClusterError(f"cannot connect to Ray at {address or 'auto'}: {exc}") from exc
            owns = True
        keys = cluster_keys(ray, namespace, create=create, timeout=timeout)
        return cls(
            namespace,
            keys,
            bind_host=bind_host,
            heartbeat=heartbeat,
            owns_ray=owns,
        )

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close this driver's node (and its Ray connection if :meth:`connect` made it).

        The cluster's nodes keep running; :meth:`down` stops them.
        """
        if self.owns_local:
            self.local.close()
        if self.owns_ray and self.ray.is_initialized():
            self.ray.shutdown()

    # -- starting nodes ------------------------------------------------------------------------

    def start_nodes(
        self,
        names: Sequence[str],
        *,
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        resources: Mapping[str, float] | None = None,
        strategy: Strategy = "SPREAD",
        placement_group: bool = True,
        actors: Sequence[BootActor] = (),
        allow_spawn: Sequence[str] = (),
        max_restarts: int = -1,
        timeout: float = 120.0,
    ) -> list[NodeInfo]:
        """Start one llmos node per name as a detached Ray actor; wait until each listens.

        Args:
            names: the nodes' names (unique in the namespace).
            num_cpus, num_gpus, resources: what each node reserves from Ray.
            strategy: how the nodes spread over Ray nodes (Ray's placement strategies).
            placement_group: reserve the nodes' resources as one placement group (then a
                ``STRICT_*`` strategy is a guarantee); False: each node is scheduled on its
                own, with Ray's ``SPREAD`` (for the spread strategies) or default scheduling.
            actors: actors each node starts under its kernel, again after every restart.
            allow_spawn: classes peers may spawn on the nodes (``"pkg.mod:Class"``).
            max_restarts: how often Ray restarts a node process that died (-1: always).
            timeout: seconds to wait for the resources and for the nodes to listen.

        Returns:
            The started nodes, in the order of ``names``.

        Raises:
            ClusterError: a name is taken, or the resources were not found in time.
        """
        ray = self.ray
        taken = sorted(set(names) & set(self.node_names()))
        if taken or len(set(names)) != len(names):
            raise ClusterError(f"node names must be new and distinct; taken: {taken or names}")
        bundle = {"CPU": float(num_cpus), "GPU": float(num_gpus), **(resources or {})}
        bundle = {key: amount for key, amount in bundle.items() if amount > 0}
        strategies = place(ray, self.namespace, names, bundle, strategy, placement_group, timeout)
        hosts: list[Any] = []
        try:
            for name, where in zip(names, strategies, strict=True):
                options = host_options(
                    NODE_PREFIX + name, self.namespace, where, bundle, max_restarts
                )
                host = ray.remote(NodeHost).options(**options)
                hosts.append(
                    host.remote(
                        name,
                        self.keys.public,
                        self.keys.secret,
                        namespace=self.namespace,
                        bind_host=self.bind_host,
                        allow_spawn=tuple(allow_spawn),
                        actors=tuple(actors),
                        heartbeat=self.heartbeat,
                    )
                )
            facts = ray.get([host.info.remote() for host in hosts], timeout=timeout)
        except BaseException as exc:
            # Nothing half-started stays (a boot actor that failed, a timeout, Ctrl+C).
            for host in hosts:
                ray.kill(host, no_restart=True)
            release_groups(ray, self.namespace, set(self.node_names()) - set(names))
            if not isinstance(exc, Exception):
                raise
            why = f"within {timeout:.3g} s" if is_timeout(exc) else f"({last_line(exc)})"
            raise ClusterError(f"nodes {list(names)} did not start {why}") from exc
        machines = self._machines()
        return [NodeInfo.from_facts(f, machines.get(f["ray_node"], {})) for f in facts]

    # -- discovery -------------------------------------------------------------------------------

    def node_names(self) -> list[str]:
        """The names of this namespace's llmos nodes (running or being restarted), sorted."""
        found = self.ray.util.list_named_actors(all_namespaces=True)
        return sorted(
            entry["name"][len(NODE_PREFIX) :]
            for entry in found
            if entry["namespace"] == self.namespace and entry["name"].startswith(NODE_PREFIX)
        )

    def host(self, name: str) -> Any:
        """The Ray actor handle of node ``name``.

        Raises:
            ClusterError: no node of that name in this namespace.
        """
        try:
            return self.ray.get_actor(NODE_PREFIX + name, namespace=self.namespace)
        except ValueError as exc:
            raise ClusterError(
                f"no llmos node {name!r} in Ray namespace {self.namespace!r}"
            ) from exc

    def nodes(self, timeout: float = 10.0) -> list[NodeInfo]:
        """The nodes that answer within ``timeout`` (one being restarted answers once up)."""
        names = self.node_names()
        pending = {self.host(name).info.remote(): name for name in names}
        ready, _ = self.ray.wait(list(pending), num_returns=len(pending), timeout=timeout)
        machines = self._machines()
        infos = []
        for ref in ready:
            try:
                facts = self.ray.get(ref)
            except Exception:  # died between the wait and the get: not listed
                continue
            infos.append(NodeInfo.from_facts(facts, machines.get(facts["ray_node"], {})))
        return sorted(infos, key=lambda info: info.name)

    def node(self, name: str, timeout: float = 10.0) -> NodeInfo:
        """Node ``name``, as it reports itself now.

        Raises:
            ClusterError: no such node, or it did not answer within ``timeout``.
        """
        try:
            facts = self.ray.get(self.host(name).info.remote(), timeout=timeout)
        except ClusterError:
            raise
        except Exception as exc:
            raise ClusterError(
                f"llmos node {name!r} did not answer within {timeout:.3g} s"
            ) from exc
        return NodeInfo.from_facts(facts, self._machines().get(facts["ray_node"], {}))

    def lookup(self, actor: str, node: str | None = None, timeout: float = 10.0) -> ActorRef:
        """The ref of the actor named ``actor`` on node ``node`` (default: the first node,
        by name, that runs one), asked over the llmos transport: a :class:`ClusterRef`,
        which follows the node across Ray's restarts (a local ref on the node this runs on).

        Raises:
            ActorDeadError: no such actor there (or on any node). ClusterError: no such node.
        """
        infos = [self.node(node, timeout)] if node else self.nodes(timeout)
        for info in infos:
            try:
                found = self.local.lookup(actor, node=info.address, timeout=timeout)
            except ActorDeadError:
                continue
            if info.address == self.local.address:
                return found
            return ClusterRef(self.local, actor, info.name, self.host(info.name), info.address)
        where = f"node {node!r}" if node else f"any node of {self.namespace!r}"
        raise ActorDeadError(f"no actor {actor!r} runs on {where}")

    def load(self, info: NodeInfo, timeout: float = 5.0) -> int:
        """The node's load as its kernel reports it over the transport: the summed load
        (mailbox depth + in flight + deferred asks) of every actor there."""
        kernel = self.local.lookup(KERNEL_NAME, node=info.address, timeout=timeout)
        rows: list[dict[str, Any]] = kernel.ask(NodeStatus(), timeout=timeout).get()
        return sum(int(row["load"]) for row in rows)

    def pick(self, resources: Mapping[str, float] | None = None, timeout: float = 10.0) -> NodeInfo:
        """The least-loaded node whose Ray node has ``resources`` (e.g. ``{"GPU": 1}``).

        Raises:
            ClusterError: no node runs on a Ray node with those resources.
        """
        wanted = dict(resources or {})
        candidates = [info for info in self.nodes(timeout) if fits(info.machine, wanted)]
        if not candidates:
            raise ClusterError(f"no llmos node runs on a Ray node with {wanted}")
        return min(candidates, key=lambda info: (self.load(info, timeout), info.name))

    def spawn(
        self,
        path: str,
        *args: Any,
        name: str | None = None,
        node: str | None = None,
        resources: Mapping[str, float] | None = None,
        timeout: float = 30.0,
        **kwargs: Any,
    ) -> ActorRef:
        """Spawn ``path`` on node ``node``, or on the node :meth:`pick` chooses for
        ``resources``; the node's kernel supervises it (it must allow ``path``). Such an actor
        ends with its node's process (a restarted node runs its boot actors only), so the ref
        is bound to the node's address.

        Raises:
            ClusterError: no such node or none fits. SpawnRefused: the node does not allow it.
        """
        target = self.node(node, timeout) if node else self.pick(resources, timeout)
        return self.local.spawn_remote(
            target.address, path, *args, name=name, timeout=timeout, **kwargs
        )

    def ref(self, actor: str, node: str, timeout: float = 10.0) -> ClusterRef:
        """A ref to the actor named ``actor`` on node ``node``, by name: it follows the node
        across Ray's restarts (see :class:`ClusterRef`). No round trip to the actor, which may
        not run yet.

        Raises:
            ClusterError: no such node, or it did not answer within ``timeout``.
        """
        return ClusterRef(
            self.local, actor, node, self.host(node), self.node(node, timeout).address
        )

    def replicas(self, actor: str, nodes: Sequence[str] | None = None) -> Replicas:
        """One ref over the actors named ``actor`` on ``nodes`` (default: every node that
        starts one at boot), routed by least load; see :class:`Replicas`."""
        if nodes is None:
            nodes = [info.name for info in self.nodes() if actor in info.boot_actors]
        if not nodes:
            raise ClusterError(f"no node of {self.namespace!r} starts an actor {actor!r}")
        return Replicas(self.local, actor, {name: self.host(name) for name in nodes})

    # -- stopping ---------------------------------------------------------------------------------

    def stop_nodes(self, names: Sequence[str], timeout: float = 15.0) -> list[str]:
        """Stop these nodes for good: each closes its sockets and stops its actors (waited
        for up to ``timeout`` in all), then its Ray actor is killed and not restarted.
        Returns the names stopped. A placement group goes with the last of its nodes.

        Raises:
            ClusterError: no node of one of these names.
        """
        ray = self.ray
        hosts = [self.host(name) for name in names]
        remaining = set(self.node_names()) - set(names)
        closing = [host.shutdown.remote() for host in hosts]
        if closing:
            ray.wait(closing, num_returns=len(closing), timeout=timeout)
        for host in hosts:
            ray.kill(host, no_restart=True)
        release_groups(ray, self.namespace, remaining)
        return list(names)

    def down(self, timeout: float = 15.0) -> list[str]:
        """Stop every node of the namespace, its Ray actor, its placement groups and the
        registry; close this driver's node first (it would only report the nodes going).
        Returns the names of the nodes stopped.

        Raises:
            ClusterError: called from inside a node (:func:`current`), which it would stop.
        """
        ray = self.ray
        if not self.owns_local:
            raise ClusterError("down() from inside an llmos node would stop that node too")
        self.local.close()
        names = self.stop_nodes(self.node_names(), timeout)
        try:
            ray.kill(ray.get_actor(REGISTRY, namespace=self.namespace), no_restart=True)
        except ValueError:
            pass
        return names

    def _machines(self) -> dict[str, dict[str, float]]:
        return {n["NodeID"]: dict(n["Resources"]) for n in self.ray.nodes() if n["Alive"]}
