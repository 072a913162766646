"""The messages a :class:`~llmos.agents.ChatAgent` answers beyond every agent's: its memory
and the tool calls of its last answer."""

from __future__ import annotations

from llmos.actors import message

__all__ = ["ClearMemory", "GetMemory", "GetToolCalls"]


@message("llmos.agents.GetMemory")
class GetMemory:
    """Ask a ChatAgent for its memory: ``{"summary": str, "turns": [...], "tokens": int}``."""


@message("llmos.agents.GetToolCalls")
class GetToolCalls:
    """Ask a ChatAgent for the tool calls of its last answer: a list of dicts (``tool``,
    ``arguments``, ``ok``, ``content``, ``error_type``) and why its loop stopped, as
    ``{"calls": [...], "stopped_by": str}``."""


@message("llmos.agents.ClearMemory")
class ClearMemory:
    """Make a ChatAgent forget everything (the persona stays)."""
