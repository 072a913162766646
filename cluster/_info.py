"""NodeInfo: what a driver knows about one llmos node of the cluster."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = ["NodeInfo", "fits"]


@dataclasses.dataclass(frozen=True)
class NodeInfo:
    """One llmos node, as its Ray actor reports it.

    Attributes:
        name: the node's name (its Ray actor is ``llmos-node:<name>`` in the namespace).
        address: its ZeroMQ address (``tcp://IP:PORT``); a new one after each restart.
        pid: the process it runs in.
        ray_node: the Ray node (machine) it was placed on.
        ip: the IP it binds.
        assigned: the Ray resources assigned to it (``CPU``, ``GPU``, custom ones).
        machine: the total resources of the Ray node it runs on.
        restarted: True when Ray restarted it after its process died.
        boot_actors: the actors it starts at every start.
    """

    name: str
    address: str
    pid: int
    ray_node: str
    ip: str
    assigned: Mapping[str, float]
    machine: Mapping[str, float]
    restarted: bool
    boot_actors: tuple[str, ...]

    @classmethod
    def from_facts(cls, facts: Mapping[str, Any], machine: Mapping[str, float]) -> NodeInfo:
        """Build one from :meth:`NodeHost.info`'s dict and its Ray node's resources."""
        return cls(
            name=str(facts["name"]),
            address=str(facts["address"]),
            pid=int(facts["pid"]),
            ray_node=str(facts["ray_node"]),
            ip=str(facts["ip"]),
            assigned=dict(facts["assigned"]),
            machine=dict(machine),
            restarted=bool(facts["restarted"]),
            boot_actors=tuple(facts["boot_actors"]),
        )


def fits(machine: Mapping[str, float], wanted: Mapping[str, float]) -> bool:
    """True when a machine's resources hold at least ``wanted`` of each (``{"GPU": 1}``)."""
    return all(machine.get(key, 0.0) >= amount for key, amount in wanted.items())
