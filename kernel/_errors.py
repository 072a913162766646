"""Errors of the kernel, a branch of the tree drawn in :mod:`llmos.actors`."""

from __future__ import annotations

from llmos.actors import LlmosError

__all__ = ["SupervisionError"]


class SupervisionError(LlmosError):
    """Raised when a supervisor gives up (restart intensity exceeded) or a spec is invalid."""
