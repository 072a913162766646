"""NodeHost: an llmos node (a kernel and a ZeroMQ endpoint) inside a Ray actor's process.

Ray places the process (resources, placement group, SPREAD or PACK) and restarts it when it
dies; llmos carries every message between nodes over its own transport. A NodeHost is built
only by :class:`~llmos.cluster.Cluster`, which hands it the cluster's CURVE key pair.

Also the cluster's registry: a small detached Ray actor that keeps the key pair, so a driver
started later (``llmos cluster status`` in another shell) joins the same cluster.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import time
from typing import Any

from llmos.actors import Actor, LlmosError, stop_all
from llmos.kernel import kernel
from llmos.transport import KeyPair, Node

from ._errors import ClusterError
from ._ray import REGISTRY, import_ray

__all__ = ["BootActor", "NodeHost", "Registry", "cluster_keys", "hosted", "import_actor_class"]

_hosted: NodeHost | None = None  # the node this Ray worker process runs, once it listens


@dataclasses.dataclass(frozen=True)
class BootActor:
    """An actor a node starts under its kernel each time it starts (again after a restart).

    Attributes:
        path: ``"pkg.mod:Class"``, imported in the node's process.
        name: the actor's name there (how refs and :meth:`Cluster.lookup` find it).
        args, kwargs: its constructor's arguments (sent through Ray, not the llmos wire).
    """

    path: str
    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)


def import_actor_class(path: str) -> type[Actor]:
    """The Actor subclass named ``"pkg.mod:Class"``.

    Raises:
        LlmosError: the path is malformed, does not import, or names no Actor subclass.
    """
    module_name, sep, class_name = path.partition(":")
    if not sep or not module_name or not class_name:
        raise LlmosError(f"an actor class is named 'pkg.mod:Class', got {path!r}")
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if not isinstance(cls, type) or not issubclass(cls, Actor):
        raise LlmosError(f"{path} is not an llmos Actor subclass")
    return cls


class NodeHost:
    """Runs in a Ray worker process: this process's kernel and a Node bound on ``bind_host``.

    Args:
        name: the node's name (its Ray actor is ``llmos-node:<name>``).
        public, secret: the cluster's CURVE key pair; the node lets in only that key and
            reaches every other node with it.
        namespace: the cluster's Ray namespace (how actors here find the other nodes).
        bind_host: the IP to bind (default: the Ray node's IP, as Ray reports it).
        allow_spawn: classes peers may spawn here (see :class:`llmos.transport.Node`).
        actors: started under the kernel at every start, so a restarted node serves them again.
        heartbeat: the node's heartbeat timeout.
    """

    def __init__(
        self,
        name: str,
        public: bytes,
        secret: bytes,
        *,
        namespace: str = "llmos",
        bind_host: str | None = None,
        allow_spawn: tuple[str, ...] = (),
        actors: tuple[BootActor, ...] = (),
        heartbeat: float = 3.0,
    ) -> None:
        ray: Any = import_ray()
        host = bind_host or ray.util.get_node_ip_address()
        root = kernel()
        self.namespace = namespace
        self.keys = KeyPair(public, secret)
        self.heartbeat = heartbeat
        self.node = Node(
            f"tcp://{host}:0",
            name=name,
            keys=self.keys,
            allow_keys=[public],
            default_peer_key=public,
            allow_spawn=allow_spawn,
            spawner=root.spawner,
            heartbeat=heartbeat,
        )
        global _hosted
        _hosted = self  # before the boot actors start: they may look for the cluster at once
        try:
            for boot in actors:
                root.spawn(import_actor_class(boot.path), *boot.args, name=boot.name, **boot.kwargs)
        except BaseException:
            self.shutdown()
            raise
        context = ray.get_runtime_context()
        self.facts: dict[str, Any] = {
            "name": name,
            "address": self.node.address,
            "pid": os.getpid(),
            "ray_node": context.get_node_id(),
            "ip": host,
            "assigned": dict(context.get_assigned_resources()),
            "restarted": bool(context.was_current_actor_reconstructed),
            "started": time.time(),
            "boot_actors": [boot.name for boot in actors],
        }

    def info(self) -> dict[str, Any]:
        """Where this node runs: name, address, pid, ray_node, ip, assigned resources,
        restarted (True after a Ray restart), started (wall clock), boot_actors."""
        return dict(self.facts)

    def address(self) -> str:
        """The node's ZeroMQ address (a new one after each restart)."""
        return self.node.address

    def shutdown(self) -> bool:
        """Close the node's sockets and stop every actor here; True if all stopped in time."""
        global _hosted
        if _hosted is self:
            _hosted = None
        self.node.close()
        try:
            stop_all(timeout=10.0)
        except LlmosError:
            return False
        return True


def hosted() -> NodeHost | None:
    """The llmos node this process runs as a Ray actor (None in a driver or elsewhere)."""
    return _hosted


class Registry:
    """The cluster's registry actor: keeps the CURVE key pair every node and driver uses."""

    def __init__(self, public: bytes, secret: bytes) -> None:
        self.pair = (public, secret)

    def keys(self) -> tuple[bytes, bytes]:
        """The cluster's key pair (public, secret), both Z85."""
        return self.pair


def cluster_keys(ray: Any, namespace: str, *, create: bool, timeout: float) -> KeyPair:
    """The key pair of the cluster of ``namespace``, from its registry actor; with ``create``
    a first driver makes the registry (detached, on its own Ray node if it can) and the keys.

    Raises:
        ClusterError: ``create`` is False and the namespace has no llmos cluster, or the
            registry did not answer within ``timeout``.
    """
    if not create:
        try:
            ray.get_actor(REGISTRY, namespace=namespace)
        except ValueError as exc:
            raise ClusterError(f"no llmos cluster in Ray namespace {namespace!r}") from exc
    fresh = KeyPair.generate()
    here = ray.get_runtime_context().get_node_id()
    registry = (
        ray.remote(Registry)
        .options(
            name=REGISTRY,
            namespace=namespace,
            lifetime="detached",
            get_if_exists=True,
            num_cpus=0,
            max_restarts=-1,
            scheduling_strategy=ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
                here, soft=True
            ),
        )
        .remote(fresh.public, fresh.secret)
    )
    try:
        public, secret = ray.get(registry.keys.remote(), timeout=timeout)
    except Exception as exc:
        raise ClusterError(f"the cluster registry of {namespace!r} did not answer") from exc
    return KeyPair(public, secret)
