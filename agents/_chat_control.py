"""The messages that control a :class:`~llmos.agents.GroupChat` (and a Dialogue): start it,
stop it, ask for its result or for the chat so far."""

from __future__ import annotations

from llmos.actors import message

__all__ = ["GetResult", "GetStatus", "StartChat", "StopChat"]


@message("llmos.agents.StartChat")
class StartChat:
    """Start the chat (answers True, or False if it had already started)."""


@message("llmos.agents.StopChat")
class StopChat:
    """End the chat now with ``reason``; answers the :class:`ChatResult`."""

    reason: str = "stopped on request"


@message("llmos.agents.GetResult")
class GetResult:
    """Answered with the :class:`ChatResult` once the chat has ended (ask with a timeout)."""


@message("llmos.agents.GetStatus")
class GetStatus:
    """Answered at once with the chat so far, as a ChatResult (``stopped_by`` "" if running)."""
