"""Placement: a group of nodes as one Ray placement group, or each node scheduled alone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from ._errors import ClusterError

__all__ = ["Strategy", "host_options", "place", "release_groups"]

Strategy = Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"]
"""How a group of nodes is placed over the Ray nodes (Ray's placement group strategies)."""


def place(
    ray: Any,
    namespace: str,
    names: Sequence[str],
    bundle: dict[str, float],
    strategy: Strategy,
    placement_group: bool,
    timeout: float,
) -> list[Any]:
    """One Ray scheduling strategy per node name.

    With ``placement_group`` the nodes' bundles are reserved first as one detached placement
    group named ``llmos:<namespace>:<names>`` (so a restarted node gets its bundle back, and
    :func:`release_groups` finds it); otherwise Ray's ``SPREAD`` or default scheduling.

    Raises:
        ClusterError: the placement group found no room within ``timeout`` (it is removed).
    """
    if not placement_group:
        spread = "SPREAD" if strategy.endswith("SPREAD") else "DEFAULT"
        return [spread] * len(names)
    group = ray.util.placement_group(
        [bundle] * len(names),
        strategy=strategy,
        name=f"llmos:{namespace}:{','.join(names)}",
        lifetime="detached",
    )
    try:
        ray.get(group.ready(), timeout=timeout)
    except BaseException as exc:  # a timeout, or Ctrl+C: the group must not stay pending
        ray.util.remove_placement_group(group)
        if not isinstance(exc, Exception):
            raise
        raise ClusterError(
            f"Ray found no room for {len(names)} x {bundle} ({strategy}) within "
            f"{timeout:.3g} s; add Ray nodes or ask for less"
        ) from exc
    return [
        ray.util.scheduling_strategies.PlacementGroupSchedulingStrategy(
            group, placement_group_bundle_index=i
        )
        for i in range(len(names))
    ]


def host_options(
    name: str, namespace: str, where: Any, bundle: dict[str, float], max_restarts: int
) -> dict[str, Any]:
    """Ray's options for a node's actor: detached and named, restarted up to ``max_restarts``
    times with its method calls retried, reserving ``bundle`` where ``where`` says."""
    extra = {key: amount for key, amount in bundle.items() if key not in ("CPU", "GPU")}
    options: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "lifetime": "detached",
        "max_restarts": max_restarts,
        "max_task_retries": -1,
        "num_cpus": bundle.get("CPU", 0.0),
        "num_gpus": bundle.get("GPU", 0.0),
        "scheduling_strategy": where,
    }
    if extra:
        options["resources"] = extra
    return options


def release_groups(ray: Any, namespace: str, remaining: set[str]) -> None:
    """Remove the namespace's placement groups none of whose nodes is in ``remaining`` (they
    would hold their resources for nothing)."""
    prefix = f"llmos:{namespace}:"
    for group in ray.util.placement_group_table().values():
        name = str(group.get("name", ""))
        if not name.startswith(prefix) or group.get("state") == "REMOVED":
            continue
        if not remaining & set(name[len(prefix) :].split(",")):
            ray.util.remove_placement_group(ray.util.get_placement_group(name))
