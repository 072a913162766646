"""The one place llmos.cluster imports Ray (lazily: llmos works without the ``ray`` extra)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from ._errors import ClusterError

__all__ = ["NODE_PREFIX", "REGISTRY", "import_ray", "is_dead_actor", "is_timeout", "last_line"]

NODE_PREFIX = "llmos-node:"
"""Ray actor names of llmos nodes: ``llmos-node:<node name>``, in the cluster's namespace."""
REGISTRY = "llmos-cluster"
"""The Ray actor name of the cluster's registry (it hands out the cluster's CURVE keys)."""


def import_ray() -> ModuleType:
    """``import ray``, or a ClusterError that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ClusterError(
            "llmos.cluster needs Ray: pip install 'llmos[ray]' (or pip install ray)"
        ) from exc
    return ray


def is_timeout(exc: BaseException) -> bool:
    """True for Ray's GetTimeoutError."""
    ray: Any = import_ray()
    return isinstance(exc, ray.exceptions.GetTimeoutError)


def is_dead_actor(exc: BaseException) -> bool:
    """True for Ray's errors about an actor that died or is being restarted."""
    ray: Any = import_ray()
    errors = ray.exceptions
    return isinstance(exc, errors.RayActorError | errors.ActorUnavailableError)


def last_line(exc: BaseException) -> str:
    """The last line of a Ray error (its cause, below Ray's traceback), at most 300 chars."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:300]
