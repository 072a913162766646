"""The errors of llmos.models, under the one tree of :mod:`llmos.actors` (drawn there)."""

from __future__ import annotations

from llmos.actors import LlmosError

__all__ = ["ModelError"]


class ModelError(LlmosError):
    """Raised when a model cannot load, or refuses or fails a request (too long, malformed).

    Subclasses say which: :class:`~llmos.models.ModelOutOfMemory` (the device ran out of memory
    for a batch) and :class:`~llmos.models.BudgetExceeded` (a caller's token budget is spent).
    """
